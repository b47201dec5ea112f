"""Frames sent over OSC (Open Sound Control over UDP, python-osc) as they are generated, e.g. for a 3-D engine.

One message per frame, to one address (``/audiokit/pose`` for ``audiokit stream dance``), its arguments:

* the frame index (int32), counting from 0 the frames sent by this stream;
* the frame's time in seconds from the start of the stream (float32): ``index / frame_rate``;
* the frame's values, flattened (float32): for a pose the 23 joints' ``x, y, z`` in cm (y up), joint by joint
  in the skeleton's order (:data:`audiokit.motion.skeleton.JOINT_NAMES`), 69 values; for a classifier its class
  posteriors.

The host is resolved once, before the stream starts, so that sending never waits on a name lookup; a datagram
the system refuses (a full buffer) is counted in ``dropped``, never raised.
"""
from __future__ import annotations

import socket
from typing import Tuple

import numpy as np

from ..errors import AudiokitError

#: characters OSC does not allow in an address
_ADDRESS_FORBIDDEN = set(" #*,?[]{}")


def osc_target(text: str) -> Tuple[str, int, socket.AddressFamily]:
    """``HOST:PORT`` (``[IPv6]:PORT`` for a literal IPv6 address) -> ``(IP address, port, family)``, the host
    resolved now; AudiokitError, one line, for anything else or a host that does not resolve."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise AudiokitError(f"--osc {text}: want HOST:PORT with a port from 1 to 65535")
    try:
        family, _, _, _, address = socket.getaddrinfo(host, int(port), type=socket.SOCK_DGRAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) and exc.strerror else str(exc)
        raise AudiokitError(f"--osc {text}: cannot resolve {host} ({reason.lower()})") from None
    return address[0], int(port), family


def check_osc_address(address: str) -> str:
    """``address`` if it is a valid OSC address (``/`` then parts without spaces or ``#*,?[]{}``), else
    AudiokitError."""
    if not address.startswith("/") or address.endswith("/") or "//" in address \
            or _ADDRESS_FORBIDDEN & set(address) or not address.isprintable() or not address.isascii():
        raise AudiokitError(f"--osc-address {address}: not an OSC address (like /audiokit/pose: '/' then "
                            "printable ASCII parts without spaces or #*,?[]{})")
    return address


class FrameSender:
    """Sends each frame to ``target`` (``HOST:PORT``) at ``address`` (see the module docstring).

    ``send(frames [n, *shape])``: one message per frame, in order; ``sent`` and ``dropped``
    count them. Construction resolves the host and checks the address (AudiokitError).
    """

    def __init__(self, target: str, address: str, frame_rate: float):
        from pythonosc.udp_client import SimpleUDPClient

        self.address = check_osc_address(address)
        host, port, family = osc_target(target)
        self.client = SimpleUDPClient(host, port, family=family)
        self.frame_rate = float(frame_rate)
        self.sent = self.dropped = 0

    def send(self, frames: np.ndarray) -> None:
        frames = np.asarray(frames, np.float32)
        for frame in frames.reshape(len(frames), -1):
            index = self.sent + self.dropped
            try:
                self.client.send_message(self.address, [index, index / self.frame_rate, *frame.tolist()])
                self.sent += 1
            except OSError:  # the system's buffer is full, or the network is down: the engine must not stop
                self.dropped += 1

    def close(self) -> None:
        self.client.close()
