"""What the API server double (tests/kubeapi.py) checks before it serves a request, as the real
one does, in its order: who is asking (authentication: bearer tokens), may they (RBAC
authorization of the Roles, ClusterRoles and bindings applied to the double), and do the
applied ValidatingAdmissionPolicies let a write through (admission: their CEL expressions,
evaluated by cel-python exactly as written in the manifests).

- Tokens: `ADMIN_TOKEN` is the test's caller (`kubernetes-admin` in `system:masters`, which
  RBAC does not check); every other token was minted by TokenRequest
  (`POST .../serviceaccounts/NAME/token`) and is that service account while the account (same
  uid) exists - deleting an account revokes its tokens, as bound tokens are. An unknown token
  is 401. No token is `system:anonymous` (discovery and /version only) - or, where the double
  is made with `anonymous_admin` (its default), the admin: kubectl sends no bearer token over
  plain HTTP, as the double speaks it (an API server whose anonymous user is bound to
  cluster-admin; tests of authorization turn this off).
- RBAC: ClusterRoleBindings grant their ClusterRole everywhere, RoleBindings their Role or
  ClusterRole in their namespace; subjects are ServiceAccounts, Users and Groups; rules match
  apiGroups, resources (`plural` or `plural/subresource`, `*`), verbs and resourceNames (never
  for create or list/watch, as Kubernetes: a collection request has no name).
- Admission (admissionregistration.k8s.io/v1): a policy applies through a binding with the
  `Deny` action when `matchConstraints.resourceRules` match (apiGroups, apiVersions,
  operations, resources as above; `excludeResourceRules`) and every `matchConditions`
  expression is true; `variables` are bound in order under `variables`; the activation holds
  `object`, `oldObject` (null on CREATE, `object` null on DELETE), `request` (an
  AdmissionRequest: kind, resource, subResource, name, namespace, operation, userInfo) and
  `params` (null). A false validation denies with its `reason` (Forbidden -> 403; default
  Invalid -> 422); an evaluation error follows `failurePolicy` (default Fail: denied,
  Invalid). Not served (a policy that uses them is refused when evaluated, never ignored):
  paramKind/paramRef, namespace and object selectors, messageExpression, the `authorizer`.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import celpy
from celpy import celtypes
from celpy.evaluation import CELEvalError

ADMIN_TOKEN = "test-token"  # the token of the double's own kubeconfig (`kubeconfig_for`)
SA_PREFIX = "system:serviceaccount:"
RBAC = ("rbac.authorization.k8s.io", "v1")
ADMISSION = ("admissionregistration.k8s.io", "v1")
CORE_SA = ("", "v1", "serviceaccounts")

Gvr = tuple[str, str, str]
Objects = Mapping[tuple[Gvr, str | None, str], dict[str, Any]]


@dataclass(frozen=True)
class UserInfo:
    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"username": self.username, "uid": self.uid, "groups": list(self.groups)}


ADMIN = UserInfo("kubernetes-admin", "", ("system:masters", "system:authenticated"))
ANONYMOUS = UserInfo("system:anonymous", "", ("system:unauthenticated",))


@dataclass(frozen=True)
class Refusal(Exception):
    """An answer that is not the resource: code, Status reason, message, Status details."""

    code: int
    reason: str
    message: str
    details: dict[str, Any] | None = None

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            out["details"] = self.details
        return out


# -- authentication ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Minted:
    namespace: str
    name: str
    uid: str  # the account's uid when minted: a recreated account does not inherit it


class Tokens:
    """Bearer tokens the double minted by TokenRequest."""

    def __init__(self) -> None:
        self.minted: dict[str, Minted] = {}

    def mint(self, account: dict[str, Any]) -> str:
        meta = account["metadata"]
        token = f"kubeapi-double.{secrets.token_urlsafe(24)}"
        self.minted[token] = Minted(meta["namespace"], meta["name"], meta["uid"])
        return token

    def authenticate(
        self, authorization: str, objects: Objects, anonymous_admin: bool = False
    ) -> UserInfo | None:
        """The requester; None for a token the server does not accept (401)."""
        if not authorization:
            return ADMIN if anonymous_admin else ANONYMOUS
        token = authorization.removeprefix("Bearer ").strip()
        if token == ADMIN_TOKEN:
            return ADMIN
        minted = self.minted.get(token)
        if minted is None:
            return None
        account = objects.get((CORE_SA, minted.namespace, minted.name))
        if account is None or account["metadata"].get("uid") != minted.uid:
            return None  # the account is gone: its bound tokens with it
        return UserInfo(
            f"{SA_PREFIX}{minted.namespace}:{minted.name}",
            minted.uid,
            ("system:serviceaccounts", f"system:serviceaccounts:{minted.namespace}",
             "system:authenticated"),
        )  # fmt: skip


UNAUTHORIZED = Refusal(401, "Unauthorized", "Unauthorized")


# -- RBAC -------------------------------------------------------------------------------------


def verb_of(method: str, name: str | None, params: Mapping[str, str]) -> str:
    if method == "GET":
        if params.get("watch") in ("true", "1"):
            return "watch"
        return "get" if name else "list"
    return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
        method, method.lower()
    )


def _has(values: list[str] | None, value: str) -> bool:
    return value in (values or []) or "*" in (values or [])


def _resource_matches(patterns: list[str] | None, resource: str) -> bool:
    """RBAC and admission rules alike: `plural`, `plural/sub`, `*` (any resource, not its
    subresources), `*/sub`, `plural/*`, `*/*`."""
    plural, _, sub = resource.partition("/")
    for pattern in patterns or []:
        p_plural, slash, p_sub = pattern.partition("/")
        if not slash:
            if not sub and pattern in ("*", plural):
                return True
        elif sub and p_plural in ("*", plural) and p_sub in ("*", sub):
            return True
    return False


def rule_allows(
    rule: dict[str, Any], verb: str, group: str, resource: str, name: str | None
) -> bool:
    """One RBAC PolicyRule. In RBAC (unlike admission rules) `*` also covers subresources."""
    names = rule.get("resourceNames") or []
    resources = rule.get("resources") or []
    return (
        _has(rule.get("apiGroups"), group)
        and ("*" in resources or _resource_matches(resources, resource))
        and _has(rule.get("verbs"), verb)
        and (not names or (name is not None and name in names))
    )


def _subject_is(subject: dict[str, Any], user: UserInfo) -> bool:
    kind = subject.get("kind")
    if kind == "ServiceAccount":
        return user.username == f"{SA_PREFIX}{subject.get('namespace')}:{subject.get('name')}"
    if kind == "User":
        return user.username == subject.get("name")
    if kind == "Group":
        return subject.get("name") in user.groups
    return False


def authorize(
    user: UserInfo,
    verb: str,
    group: str,
    resource: str,
    ns: str | None,
    name: str | None,
    objects: Objects,
) -> bool:
    """RBAC's decision (and `system:masters`, which the API server lets through unchecked)."""
    if "system:masters" in user.groups:
        return True
    for (gvr, b_ns, _), binding in list(objects.items()):
        if gvr not in ((*RBAC, "clusterrolebindings"), (*RBAC, "rolebindings")):
            continue
        if gvr[2] == "rolebindings" and b_ns != ns:
            continue
        if not any(_subject_is(s, user) for s in binding.get("subjects") or []):
            continue
        ref = binding.get("roleRef") or {}
        if ref.get("kind") == "ClusterRole":
            role = objects.get(((*RBAC, "clusterroles"), None, ref.get("name", "")))
        else:
            role = objects.get(((*RBAC, "roles"), b_ns, ref.get("name", "")))
        for rule in (role or {}).get("rules") or []:
            if rule_allows(rule, verb, group, resource, name):
                return True
    return False


def forbidden(user: UserInfo, verb: str, group: str, resource: str, ns: str | None) -> Refusal:
    """The message the API server's RBAC authorizer answers with."""
    scope = f'in the namespace "{ns}"' if ns else "at the cluster scope"
    plural, _, sub = resource.partition("/")
    what = f'resource "{plural}"' + (f' subresource "{sub}"' if sub else "")
    return Refusal(
        403,
        "Forbidden",
        f'{resource} is forbidden: User "{user.username}" cannot {verb} {what} in API group '
        f'"{group}" {scope}',
        {"group": group, "kind": plural},
    )


# -- admission: ValidatingAdmissionPolicy -----------------------------------------------------

CODES = {"Unauthorized": 401, "Forbidden": 403, "Invalid": 422, "RequestEntityTooLarge": 413}


@dataclass(frozen=True)
class Attributes:
    """One write as admission sees it."""

    operation: str  # CREATE, UPDATE, DELETE
    gvr: Gvr
    kind: str
    subresource: str  # "" for the main resource
    namespace: str | None
    name: str
    user: UserInfo

    def request(self) -> dict[str, Any]:
        group, version, plural = self.gvr
        gvk = {"group": group, "version": version, "kind": self.kind}
        gvr = {"group": group, "version": version, "resource": plural}
        return {
            "uid": "00000000-0000-0000-0000-000000000000",
            "kind": gvk,
            "resource": gvr,
            "subResource": self.subresource,
            "requestKind": gvk,
            "requestResource": gvr,
            "requestSubResource": self.subresource,
            "name": self.name,
            "namespace": self.namespace or "",
            "operation": self.operation,
            "userInfo": self.user.to_dict(),
            "dryRun": False,
            "options": {},
        }


class Unsupported(Exception):
    """A policy uses what the double does not evaluate."""


_ENV = celpy.Environment()


@functools.cache
def program(expression: str) -> celpy.Runner:
    return _ENV.program(_ENV.compile(expression))


def evaluate(expression: str, activation: dict[str, Any]) -> Any:
    """One CEL expression; an evaluation error is returned as the `CELEvalError` value."""
    try:
        return program(expression).evaluate(activation)
    except CELEvalError as exc:
        return exc


def _rule_matches(rule: dict[str, Any], attrs: Attributes) -> bool:
    group, version, plural = attrs.gvr
    resource = f"{plural}/{attrs.subresource}" if attrs.subresource else plural
    return (
        _has(rule.get("apiGroups"), group)
        and _has(rule.get("apiVersions"), version)
        and _has(rule.get("operations"), attrs.operation)
        and _resource_matches(rule.get("resources"), resource)
    )


def _matches(constraints: dict[str, Any], attrs: Attributes) -> bool:
    for selector in ("namespaceSelector", "objectSelector"):
        if constraints.get(selector):
            raise Unsupported(selector)
    included = any(_rule_matches(r, attrs) for r in constraints.get("resourceRules") or [])
    excluded = any(_rule_matches(r, attrs) for r in constraints.get("excludeResourceRules") or [])
    return included and not excluded


def _activation(
    attrs: Attributes, old: dict[str, Any] | None, new: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "object": celpy.json_to_cel(new),
        "oldObject": celpy.json_to_cel(old),
        "request": celpy.json_to_cel(attrs.request()),
        "params": None,
    }


def _is_true(value: Any) -> bool:
    return isinstance(value, celtypes.BoolType) and bool(value)


def policy_decision(
    policy: dict[str, Any],
    attrs: Attributes,
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
) -> tuple[str, str] | None:
    """None when the policy admits the request (or does not apply); else (reason, message)."""
    spec = policy.get("spec") or {}
    if spec.get("paramKind"):
        raise Unsupported("paramKind")
    if not _matches(spec.get("matchConstraints") or {}, attrs):
        return None
    fail_closed = spec.get("failurePolicy", "Fail") == "Fail"
    activation = _activation(attrs, old, new)
    for condition in spec.get("matchConditions") or []:
        result = evaluate(condition["expression"], activation)
        if isinstance(result, CELEvalError):
            if fail_closed:
                return (
                    "Invalid",
                    f"expression '{condition['expression']}' resulted in error: {result.args[0]}",
                )
            return None
        if not _is_true(result):
            return None
    variables: dict[Any, Any] = {}
    activation["variables"] = celtypes.MapType(variables)
    for variable in spec.get("variables") or []:
        variables[celtypes.StringType(variable["name"])] = evaluate(
            variable["expression"], activation
        )
        activation["variables"] = celtypes.MapType(variables)
    for validation in spec.get("validations") or []:
        if validation.get("messageExpression"):
            raise Unsupported("messageExpression")
        expression = validation["expression"]
        result = evaluate(expression, activation)
        if isinstance(result, CELEvalError):
            if fail_closed:
                return "Invalid", f"expression '{expression}' resulted in error: {result.args[0]}"
            continue
        if not _is_true(result):
            message = validation.get("message") or f"failed expression: {expression}"
            return validation.get("reason", "Invalid"), message
    return None


def admit(
    attrs: Attributes,
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
    objects: Objects,
) -> None:
    """Raise the API server's answer when a bound policy denies the write."""
    policies_gvr = (*ADMISSION, "validatingadmissionpolicies")
    bindings_gvr = (*ADMISSION, "validatingadmissionpolicybindings")
    for (gvr, _, binding_name), binding in sorted(list(objects.items()), key=lambda kv: kv[0][2]):
        if gvr != bindings_gvr:
            continue
        spec = binding.get("spec") or {}
        if "Deny" not in (spec.get("validationActions") or []):
            continue
        if spec.get("paramRef") or spec.get("matchResources"):
            raise Unsupported(f"binding {binding_name}: paramRef/matchResources")
        policy = objects.get((policies_gvr, None, spec.get("policyName", "")))
        if policy is None:
            continue
        decision = policy_decision(policy, attrs, old, new)
        if decision is None:
            continue
        reason, why = decision
        policy_name = policy["metadata"]["name"]
        message = (
            f"ValidatingAdmissionPolicy '{policy_name}' with binding '{binding_name}' denied "
            f"request: {why}"
        )
        group, _, plural = attrs.gvr
        resource = f"{plural}.{group}" if group else plural
        raise Refusal(
            CODES.get(reason, 422),
            reason,
            f'{resource} "{attrs.name}" is forbidden: {message}',
            {"name": attrs.name, "group": group, "kind": plural, "causes": [{"message": message}]},
        )


Admit = Callable[[str, dict[str, Any] | None, dict[str, Any] | None], None]
