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


_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
# Kubernetes' limits (apimachinery validation): a label value or the name part of a key at
# most 63 characters, a key's prefix a DNS-1123 subdomain, all annotations together 256 KiB.
MAX_LABEL_VALUE = 63
TOTAL_ANNOTATION_BYTES = 256 * 1024


def _qualified_name(key: str) -> str | None:
    """Why `key` is not a Kubernetes label/annotation key (`[prefix/]name`), or None."""
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        return "its prefix must be a DNS-1123 subdomain"
    if not name or len(name) > MAX_LABEL_VALUE or not _QUALIFIED_NAME.match(name):
        return (
            f"its name must be 1-{MAX_LABEL_VALUE} letters, digits, '-', '_' or '.', starting "
            "and ending with a letter or digit"
        )
    return None


def _shown(text: str) -> str:
    """A user's key or value, short enough for a one-line error."""
    return repr(text if len(text) <= 40 else text[:37] + "...")


def validate_labels(labels: dict[str, str]) -> dict[str, str]:
    for key, value in labels.items():
        problem = _qualified_name(key)
        if problem:
            raise ValueError(f"label key {_shown(key)}: {problem}")
        if value and (len(value) > MAX_LABEL_VALUE or not _QUALIFIED_NAME.match(value)):
            raise ValueError(
                f"label {_shown(key)}: value {_shown(value)} must be empty or 1-"
                f"{MAX_LABEL_VALUE} letters, digits, '-', '_' or '.', starting and ending with "
                "a letter or digit"
            )
    return labels


def validate_annotations(annotations: dict[str, str]) -> dict[str, str]:
    total = 0
    for key, value in annotations.items():
        problem = _qualified_name(key)
        if problem:
            raise ValueError(f"annotation key {_shown(key)}: {problem}")
        total += len(key.encode()) + len(value.encode())
    if total > TOTAL_ANNOTATION_BYTES:
        raise ValueError(
            f"annotations total {total} bytes, more than the {TOTAL_ANNOTATION_BYTES} allowed"
        )
    return annotations


def validate_dns1123(name: str) -> str:
    """A Kubernetes object name: lowercase alphanumerics, '-' and '.', at most 253 characters."""
    if not name:
        raise ValueError("must not be empty")
    if len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        raise ValueError(
            f"{_shown(name)} is not a valid DNS-1123 name (lowercase letters, digits, '-' and '.', "
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

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 63 or not _DNS1123_LABEL.match(value)):
            raise ValueError(f"{_shown(value)} is not a valid namespace (a DNS-1123 label)")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        return validate_labels(value)

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, value: dict[str, str]) -> dict[str, str]:
        return validate_annotations(value)


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
