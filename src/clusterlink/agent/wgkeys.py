"""The node's WireGuard key pair: made by the agent on first start, kept only on the node.

`<stateDir>/wireguard.key` holds the private key (base64, as `wg genkey` prints it), mode
0600, written atomically (a new file renamed over the old one), never logged and never sent
anywhere. Only the public key leaves the node, on its ClusterNode (`wireguardPublicKey`).
"""

from __future__ import annotations

import base64
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

KEY_FILE = "wireguard.key"
ROTATED_FILE = "wireguard.rotated"  # the last rotation request this node carried out


class KeyFileError(OSError):
    """The key file cannot be read or written (the message says which and why)."""


@dataclass(frozen=True, slots=True)
class KeyPair:
    private: str = ""  # base64; repr hides it (dataclass field repr below)
    public: str = ""

    def __repr__(self) -> str:
        return f"KeyPair(public={self.public!r})"


def public_of(private_b64: str) -> str:
    raw = base64.b64decode(private_b64)
    pub = X25519PrivateKey.from_private_bytes(raw).public_key()
    return base64.b64encode(pub.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def generate() -> str:
    """A new private key, base64 (X25519 clamps the scalar itself, as `wg genkey` does)."""
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    key = X25519PrivateKey.generate()
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return base64.b64encode(raw).decode()


def _write(path: Path, private_b64: str) -> None:
    tmp = path.with_name(path.name + ".new")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(private_b64 + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_or_create(state_dir: Path) -> KeyPair:
    """The node's key pair, made (and saved 0600) the first time."""
    path = state_dir / KEY_FILE
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            _write(path, generate())
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, 0o600)  # someone loosened it: a private key is for us alone
        private = path.read_text().strip()
        return KeyPair(private, public_of(private))
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"{path}: {getattr(exc, 'strerror', None) or exc}") from None


def rotate(state_dir: Path, request: str) -> KeyPair:
    """A new key pair replaces the old one; `request` is remembered as carried out."""
    path = state_dir / KEY_FILE
    try:
        _write(path, generate())
        (state_dir / ROTATED_FILE).write_text(request + "\n")
    except OSError as exc:
        raise KeyFileError(f"{path}: {exc.strerror}") from None
    return load_or_create(state_dir)


def last_rotation(state_dir: Path) -> str:
    try:
        return (state_dir / ROTATED_FILE).read_text().strip()
    except FileNotFoundError:
        return ""
