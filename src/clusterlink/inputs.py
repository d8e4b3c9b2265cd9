"""Reading what a user hands us - resource files, topologies, kubeconfigs, lab handles, resume
files - so that no file can hurt: every reader goes through here.

A file is refused, with one line naming it and the problem and never echoing its contents
(YAML errors give line and column only), when it is: not there, a directory, not a regular
file (a FIFO would block a reader forever, a device never ends), larger than `MAX_FILE_BYTES`,
binary (a NUL byte) or not UTF-8; YAML or JSON that nests deeper than `MAX_DEPTH` (checked
while composing, so deep input cannot exhaust Python's stack), that expands to more than
`MAX_VALUES` values through aliases (a "billion laughs" bomb), that holds a cycle of aliases,
or that repeats a key within one mapping (kubectl refuses those too; PyYAML would silently keep
the last one).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from clusterlink.errors import BadInput

# The Kubernetes API server refuses request bodies above 3 MiB; no file we read needs more.
MAX_FILE_BYTES = 3 * 1024 * 1024
# Nesting levels of mappings and lists. Our resources nest about 8 deep, a kubeconfig 5,
# managedFields about 15; 100 leaves room and keeps every recursive reader far from its limit.
MAX_DEPTH = 100
# Values (scalars, lists, mappings) after expanding aliases: a 3 MiB file of real content holds
# well under this; a billion-laughs bomb expands to 10^9 from a few hundred bytes.
MAX_VALUES = 500_000
_MERGE_TAG = "tag:yaml.org,2002:merge"


class InputError(BadInput):
    """A file or text we were given cannot be used; the message names it and the problem."""


def read_text(path: str | Path, what: str = "file") -> str:
    """The text of a regular, not oversized, UTF-8 file without NUL bytes (InputError)."""
    p = Path(path)
    name = f"{what} {p}"
    if "\0" in str(p):
        raise InputError(f"{what}: a path with a NUL byte")
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below).
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InputError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{name}: is a directory, expected a file") from None
    except OSError as exc:
        raise InputError(f"{name}: cannot read ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise InputError(f"{name}: is a directory, expected a file")
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{name}: not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise InputError(f"{name}: {info.st_size} bytes, more than the {_limit()} limit")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise InputError(f"{name}: cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    return decode(data, name)


def read_stream(stream: IO[bytes], source: str = "<stdin>") -> str:
    """The text of a byte stream (stdin's buffer), with the checks of a file's."""
    try:
        data = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise InputError(f"{source}: cannot read ({exc.strerror or exc})") from None
    return decode(data, source)


def decode(data: bytes, source: str) -> str:
    """UTF-8 text of `data`, refusing binary data and anything above `MAX_FILE_BYTES`."""
    if len(data) > MAX_FILE_BYTES:
        raise InputError(f"{source}: more than the {_limit()} limit")
    if b"\0" in data:
        raise InputError(f"{source}: binary file (NUL bytes), expected text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{source}: not UTF-8 text (invalid byte at offset {exc.start})") from None


def _limit() -> str:
    return f"{MAX_FILE_BYTES // (1024 * 1024)} MiB"


def read_yaml(path: str | Path, what: str = "file") -> Any:
    """One YAML (or JSON) document from a file; None when it is empty."""
    return load_yaml(read_text(path, what), f"{what} {path}")


def load_yaml(text: str, source: str) -> Any:
    """One YAML document from text (InputError naming `source`); None when it is empty."""
    docs = load_yaml_documents(text, source)
    if len(docs) > 1:
        raise InputError(f"{source}: {len(docs)} YAML documents, expected one")
    return docs[0] if docs else None


def load_yaml_documents(text: str, source: str) -> list[Any]:
    """Every document of a multi-document YAML text (empty documents left out)."""
    if len(text) > MAX_FILE_BYTES:
        raise InputError(f"{source}: more than the {_limit()} limit")
    try:
        return list(_documents(text, source))
    except yaml.YAMLError as exc:
        raise InputError(f"{source}: malformed YAML{_where(exc)}: {_problem(exc)}") from None
    except _TooDeep as exc:
        raise InputError(
            f"{source}: nested deeper than {MAX_DEPTH} levels at line {exc.line}, "
            f"column {exc.column}"
        ) from None


def _documents(text: str, source: str) -> Iterator[Any]:
    loader = _Loader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            _measure(node, source)
            doc = loader.construct_document(node)
            if doc is not None:
                yield doc
    finally:
        loader.dispose()


def read_json(path: str | Path, what: str = "file") -> Any:
    return load_json(read_text(path, what), f"{what} {path}")


def load_json(text: str, source: str) -> Any:
    """A JSON value with the same limits as YAML: depth, size, no repeated keys."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise _Duplicate()
            out[key] = value
        return out

    try:
        data = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{source}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except _Duplicate:
        raise InputError(f"{source}: a key repeated within one object") from None
    except RecursionError:  # the C decoder checks its depth and raises this cleanly
        raise InputError(f"{source}: nested deeper than {MAX_DEPTH} levels") from None
    depth = max_depth(data)
    if depth > MAX_DEPTH:
        raise InputError(f"{source}: nested deeper than {MAX_DEPTH} levels")
    return data


def max_depth(value: Any) -> int:
    """Nesting depth of decoded data (a scalar is 1), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            return depth
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list | tuple):
            stack.extend((v, depth + 1) for v in item)
    return deepest


class _Duplicate(Exception):
    pass


class _TooDeep(Exception):
    def __init__(self, line: int, column: int) -> None:
        super().__init__()
        self.line, self.column = line, column


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader that stops composing at `MAX_DEPTH` and refuses repeated keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise _TooDeep(mark.line + 1, mark.column + 1)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            first: dict[Any, Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    seen = first.get(key)
                except TypeError:  # an unhashable key: the base class says so
                    continue
                if seen is not None:
                    mark, was = key_node.start_mark, seen.start_mark
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"a key repeated within one mapping (first at line {was.line + 1}, "
                        f"column {was.column + 1})",
                        mark,
                    )
                first[key] = key_node
        return super().construct_mapping(node, deep=deep)


def _children(node: Node) -> Iterator[Node]:
    if isinstance(node, SequenceNode):
        yield from node.value
    elif isinstance(node, MappingNode):
        for key, value in node.value:
            yield key
            yield value


def _measure(root: Node, source: str) -> None:
    """Refuse a composed document whose aliases nest it too deep, expand it beyond
    `MAX_VALUES` values or form a cycle - before anything walks the expanded tree."""
    done: dict[int, tuple[int, int]] = {}  # id(node) -> (depth, values), aliases expanded
    open_: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            kids = [done[id(c)] for c in _children(node)]
            depth = 1 + max((d for d, _ in kids), default=0)
            values = 1 + sum(v for _, v in kids)
            open_.discard(key)
            done[key] = (depth, values)
            mark = node.start_mark
            if depth > MAX_DEPTH:
                raise InputError(
                    f"{source}: nested deeper than {MAX_DEPTH} levels (through aliases) at "
                    f"line {mark.line + 1}, column {mark.column + 1}"
                )
            if values > MAX_VALUES:
                raise InputError(
                    f"{source}: expands to more than {MAX_VALUES} values (through aliases) at "
                    f"line {mark.line + 1}, column {mark.column + 1}"
                )
            continue
        if key in done:
            continue
        if key in open_:
            mark = node.start_mark
            raise InputError(
                f"{source}: an alias refers to its own anchor at line {mark.line + 1}, "
                f"column {mark.column + 1}"
            )
        if isinstance(node, ScalarNode):
            done[key] = (1, 1)
            continue
        open_.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node))


def _where(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is not None:
        return f" at line {mark.line + 1}, column {mark.column + 1}"
    position = getattr(exc, "position", None)  # ReaderError: a character YAML does not allow
    return f" at character {position}" if isinstance(position, int) else ""


def _problem(exc: yaml.YAMLError) -> str:
    """PyYAML's problem text (fixed phrases, at most a character or a tag of the input), made
    printable and short; never the snippet of the offending line that str(exc) carries."""
    if isinstance(exc, yaml.reader.ReaderError):
        return "a character YAML does not allow (control characters are refused)"
    problem = str(getattr(exc, "problem", None) or "cannot parse")
    printable = "".join(c if c.isprintable() else "?" for c in problem)
    return printable if len(printable) <= 100 else printable[:97] + "..."
