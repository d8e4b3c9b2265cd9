"""Kubernetes-style object plumbing shared by every resource: metadata, the base model, names."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)


def validate_dns1123(name: str) -> str:
    """A Kubernetes object name: lowercase alphanumerics, '-' and '.', at most 253 characters."""
    if not name:
        raise ValueError("must not be empty")
    if len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        raise ValueError(
            f"{name!r} is not a valid DNS-1123 name (lowercase letters, digits, '-' and '.', "
            "starting and ending with a letter or digit, at most 253 characters)"
        )
    return name


def now_rfc3339(clock: dt.datetime | None = None) -> str:
    """Kubernetes MicroTime text (UTC, microseconds)."""
    moment = clock or dt.datetime.now(dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_rfc3339(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


class Model(BaseModel):
    """Base of every schema piece: camelCase JSON names, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", serialize_by_alias=True
    )


class ObjectMeta(Model):
    # Kubernetes adds many server-side fields (managedFields, ownerReferences, ...): keep them.
    model_config = ConfigDict(extra="allow")

    name: str
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    resource_version: str | None = None
    generation: int | None = None
    uid: str | None = None
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    finalizers: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return validate_dns1123(value)


class Resource(Model):
    """A top-level object: apiVersion, kind, metadata, spec and (for most kinds) status."""

    KIND: ClassVar[str] = ""
    API_VERSION: ClassVar[str] = ""
    PLURAL: ClassVar[str] = ""
    NAMESPACED: ClassVar[bool] = False
    HAS_STATUS: ClassVar[bool] = True

    api_version: str = ""
    kind: str = ""
    metadata: ObjectMeta

    @model_validator(mode="before")
    @classmethod
    def _fill_type_meta(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            data.setdefault("apiVersion", cls.API_VERSION)
            data.setdefault("kind", cls.KIND)
        return data

    @model_validator(mode="after")
    def _check_type_meta(self) -> Self:
        if self.api_version != self.API_VERSION:
            raise ValueError(f"apiVersion must be {self.API_VERSION!r}, not {self.api_version!r}")
        if self.kind != self.KIND:
            raise ValueError(f"kind must be {self.KIND!r}, not {self.kind!r}")
        return self

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def key(self) -> str:
        """Store key: name, or namespace/name for namespaced kinds."""
        ns = self.metadata.namespace
        return f"{ns}/{self.metadata.name}" if self.NAMESPACED and ns else self.metadata.name

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
