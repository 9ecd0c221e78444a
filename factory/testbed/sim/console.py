"""A simulated console unit: a real `sh -i` on a pseudo-terminal of its own, with `root` as
its working directory, wired to the station's SimPty. Echo, prompts and line discipline are
the kernel's; the SimPty paces the bytes to the baud rate. Needs `setsid` (util-linux or
busybox) to give the shell its terminal.

Faults (sim.misbehaviour): `silent` and `drop_rate` are the SimPty's; `garbage` sends random
bytes instead of everything the unit says; `corrupt_next` flips a byte in the next answers;
`hangup_after_bytes` unplugs (the SimPty's); `corrupt_storage` gives the shell a `mv`
function (through $ENV) that flips the first byte of every file it moves into place, like
flash that does not keep what it was given. A shell that exits unplugs the unit. The unit
has its own /sys as far as `cat` goes: `cat /sys/class/net/eth0/address` (the console driver's
default identify command) reads its MAC from under `root`, not the host's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

from factory.testbed.sim.pty import SimPty, Unplugged

_CORRUPTING_MV = r"""
mv() {
    command mv "$@" || return
    local f b
    for f; do :; done
    [ -f "$f" ] && [ -s "$f" ] || return 0
    b=$(dd if="$f" bs=1 count=1 2>/dev/null | od -An -tu1)
    printf "\\$(printf %o $(( $b ^ 1 )))" | dd of="$f" bs=1 count=1 conv=notrunc 2>/dev/null
    return 0
}
"""


# The unit's own /sys: the default identify command (`cat /sys/class/net/eth0/address`) reads
# the simulated unit's MAC, kept under its root, not the host's.
_OWN_SYS = """
_unit_root=$PWD
cat() {
    case "$#:$1" in 1:/sys/*) command cat "$_unit_root$1" ;; *) command cat "$@" ;; esac
}
"""

# A unit whose firmware image has no openssl (the station then makes its key).
_NO_OPENSSL = """
openssl() { echo "sh: openssl: not found" >&2; return 127; }
"""


async def run_console_unit(sim: SimPty, root: Path, hardware_id: str, *, prompt: str = "# ",
                           login: tuple[str, str] | None = None, shell: str = "/bin/sh",
                           openssl: bool = True) -> None:
    """Serve a shell on `sim` (after `login: ` / `Password: ` when `login` is given) until
    the unit is unplugged; the shell and what it started are killed then."""
    address = root / "sys" / "class" / "net" / "eth0" / "address"
    address.parent.mkdir(parents=True, exist_ok=True)
    address.write_text(hardware_id + "\n")
    try:
        typed = await _login(sim, *login) if login else b""
        await _serve_shell(sim, root, prompt, shell, typed, openssl)
    except Unplugged:
        return


async def _serve_shell(sim: SimPty, root: Path, prompt: str, shell: str, typed: bytes,
                       openssl: bool) -> None:
    env = {**os.environ, "PS1": prompt, "PS2": "> ", "TERM": "dumb"}
    for name in ("ENV", "PWD", "OLDPWD"):
        env.pop(name, None)
    with contextlib.ExitStack() as cleanup:
        startup = (_OWN_SYS + (_CORRUPTING_MV if sim.misbehaviour.corrupt_storage else "")
                   + ("" if openssl else _NO_OPENSSL))
        env["ENV"] = cleanup.enter_context(_script(startup))
        master, slave = pty.openpty()
        try:
            # setsid -c: a session of its own with the pty as its controlling terminal, as
            # on a console (Ctrl-C interrupts, a hangup ends it); a preexec_fn doing the same
            # would make Python fork its whole self, 4 ms of blocked event loop per unit.
            process = await asyncio.create_subprocess_exec(
                "setsid", "-c", shell, "-i", stdin=slave, stdout=slave, stderr=slave,
                cwd=root, env=env)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        terminal = _Terminal(master)
        try:
            await terminal.write(typed)
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(_to_shell(sim, terminal))
                tasks.create_task(_from_shell(sim, terminal))
        except* Unplugged:
            pass
        finally:
            terminal.close()  # a hangup: SIGHUP to the shell's session
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


@contextlib.contextmanager
def _script(text: str) -> Iterator[str]:
    """A temporary file holding `text`, named for the duration."""
    fd, name = tempfile.mkstemp(prefix="sim-console-", suffix=".sh")
    try:
        os.write(fd, text.encode())
        os.close(fd)
        yield name
    finally:
        os.unlink(name)


async def _to_shell(sim: SimPty, terminal: _Terminal) -> None:
    # Small reads, so the shell echoes while the line is still arriving, as a UART would.
    chunk = max(8, (sim.baud or 0) // 1000) if sim.baud else 4096
    while True:
        await terminal.write(await sim.read(chunk))


async def _from_shell(sim: SimPty, terminal: _Terminal) -> None:
    while True:
        data = await terminal.read()
        if not data:
            sim.hangup()
            raise Unplugged("the unit's shell exited")
        await _say(sim, data)


async def _say(sim: SimPty, data: bytes) -> None:
    """What the unit says, through the faults that SimPty.write leaves to the unit."""
    m = sim.misbehaviour
    if m.garbage:
        data = m.rng.randbytes(len(data))
    elif m.corrupt_next > 0 and data:
        m.corrupt_next -= 1
        at = m.rng.randrange(len(data))
        data = data[:at] + bytes([data[at] ^ 0x20]) + data[at + 1:]
    await sim.write(data)


class _Terminal:
    """The sim's (master) end of the shell's pty."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._output = bytearray()
        self._exited = False
        self._ready = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        os.set_blocking(fd, False)
        self._loop.add_reader(fd, self._on_readable)

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: the shell and all it started have closed the terminal
            data = b""
        if data:
            self._output += data
        else:
            self._exited = True
            self._loop.remove_reader(self._fd)
        self._ready.set()

    async def read(self) -> bytes:
        """All the shell said since the last read (one paced write for the lot: SimPty.write
        restarts its clock on every call, so many small ones fall behind); b"" once it has
        exited."""
        while not self._output and not self._exited:
            self._ready.clear()
            await self._ready.wait()
        data = bytes(self._output)
        self._output.clear()
        return data

    async def write(self, data: bytes) -> None:
        """Type `data` at the shell (Unplugged if it has exited)."""
        while data:
            try:
                data = data[os.write(self._fd, data):]
            except BlockingIOError:
                await asyncio.sleep(0.001)
            except OSError as exc:  # EIO: nobody holds the shell's side any more
                raise Unplugged(f"the unit's shell is gone ({exc})") from exc

    def close(self) -> None:
        self._loop.remove_reader(self._fd)
        with contextlib.suppress(OSError):
            os.close(self._fd)


class _Keys:
    """Lines typed at the login prompt, read from the station's side."""

    def __init__(self, sim: SimPty) -> None:
        self._sim = sim
        self._pending = b""
        self._after_cr = False

    async def line(self, echo: bool) -> str | None:
        """The next line (None when Ctrl-C cancelled it); echoed as a tty would if `echo`."""
        typed = bytearray()
        while True:
            if not self._pending:
                self._pending = await self._sim.read()
            byte, self._pending = self._pending[0], self._pending[1:]
            after_cr, self._after_cr = self._after_cr, byte == 0x0D
            if byte == 0x0A and after_cr:
                continue  # CR LF is one end of line
            if byte in (0x0A, 0x0D):
                await _say(self._sim, b"\r\n")
                return typed.decode(errors="replace")
            if byte == 0x03:
                await _say(self._sim, b"^C\r\n")
                return None
            if byte == 0x15:
                typed.clear()
                continue
            typed.append(byte)
            if echo:
                await _say(self._sim, bytes([byte]))

    def rest(self) -> bytes:
        """What was typed after the last line (for the shell)."""
        return self._pending


async def _login(sim: SimPty, user: str, password: str) -> bytes:
    """A login program: `login: `, `Password: ` (not echoed), until both are right."""
    keys = _Keys(sim)
    while True:
        await _say(sim, b"\r\nlogin: ")
        name = await keys.line(echo=True)
        if not name:
            continue
        await _say(sim, b"Password: ")
        secret = await keys.line(echo=False)
        if (name, secret) == (user, password):
            return keys.rest()
        await _say(sim, b"\r\nLogin incorrect")
