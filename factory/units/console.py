"""The `console` driver: a unit whose serial console is a POSIX shell (embedded Linux).

Each command travels on one line between two markers whose echo differs from their output:
the line `echo @FS''42@;CMD;echo @FS''42@$?` is echoed by the tty as typed, but the shell
prints `@FS42@` and `@FS42@<status>`, so what lies between those two is the command's output,
whatever the echo looked like; a silent unit is a UnitTimeout, one that answers without our
markers a ProtocolError, a non-zero status a UnitRefused.

A file travels as base64 (no byte of it ever reaches the shell as syntax), several
single-quoted lines per command line, appended to a temporary file next to the target (made
mode 0600 before any byte is in it); the last command checks that file's size, decodes it and
moves it into place with `mv -f` (atomic: the old file or the new one, never half of it).
A file of printable ASCII lines (device.json5, PEM) travels as itself instead: single-quoted
`printf '%s'` arguments (a quote becomes '\'' ), so the wire carries ~1.05x its size, not 4/3.
Printable ASCII holds no byte the tty's line discipline acts on, and nothing inside single
quotes is shell syntax.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import secrets
import shlex

from factory import failpoints
from factory.config.drivers import ConsoleSettings
from factory.units.console_commands import (
    MAX_LINE,
    check_digest,
    marked,
    read_answer,
    read_command,
    verify_command,
    write_commands,
)
from factory.units.driver import Identity, Verification
from factory.units.errors import (
    ProtocolError,
    UnitError,
    UnitRefused,
    UnitTimeout,
)
from factory.units.port import Port

WAKE_TRIES = 3  # newlines sent (the later ones after Ctrl-C) before giving up
PRESENT_TIMEOUT = 1.0  # seconds a present unit takes at most to answer a newline
LOGIN_QUIET = 0.1  # seconds without output before we trust a login prompt is the last one
_LOGIN = re.compile(rb"(?i:login): ?$")
_PASSWORD = re.compile(rb"(?i:password): ?$")
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")


class ConsoleDriver:
    """One unit's shell on one open port."""

    def __init__(self, port: Port, settings: ConsoleSettings) -> None:
        self._port, self._settings = port, settings
        self._prompt = re.compile(settings.prompt.encode())
        self._attention = re.compile(b"|".join(
            b"(?:" + p.pattern + b")" for p in (_LOGIN, _PASSWORD, self._prompt)))
        # A random start keeps a new driver from taking an old command's markers for its own.
        self._tags = itertools.count(secrets.randbelow(90_000) + 10_000)

    async def wake(self) -> None:
        """Newlines until the shell prompts (Ctrl-U first, then Ctrl-C); log in if asked."""
        budget = self._settings.timeout / WAKE_TRIES
        heard = self._port.bytes_in
        for attempt in range(WAKE_TRIES):
            await self._port.write(b"\x15\n" if attempt == 0 else b"\x03\n")
            try:
                seen = await self._port.read_until(self._attention, budget)
            except UnitTimeout:
                continue
            if self._kind(seen) != "prompt":
                await self._login(self._kind(seen))
            return
        if self._port.bytes_in > heard:
            raise ProtocolError("the unit answers, but not with a shell prompt matching "
                                f"{self._settings.prompt!r} (wrong baud rate or prompt?)")
        raise UnitTimeout(f"the unit's console did not answer {WAKE_TRIES} newlines within "
                          f"{self._settings.timeout:g} s")

    async def identify(self) -> Identity:
        """The trimmed output of the configured identify command is the hardware id."""
        # eval: a comment or a trailing `&` in the configured command cannot eat our marker
        output = await self._run(f"eval {shlex.quote(self._settings.identify_command)}",
                                 "identify itself")
        if not output.strip():
            raise UnitRefused(f"`{self._settings.identify_command}` printed nothing on the "
                              "unit; check the console's identify_command")
        return Identity(hardware_id=output.strip())

    async def write_file(self, path: str, data: bytes) -> None:
        """Store `data` at `path`: base64 lines into a temporary file, decoded, moved."""
        commands = write_commands(path, data, self._settings.chunk_size)
        for number, command in enumerate(commands, 1):
            if number > 1:
                failpoints.hit("serial.write")
            step = ": check its size, decode, move into place" if number == len(commands) else ""
            await self._run(command,
                            f"store {path} (command {number} of {len(commands)}{step})")

    async def read_file(self, path: str) -> bytes:
        """The file at `path` as the unit holds it (sent back as base64)."""
        return read_answer(path, await self._run(read_command(path), f"read {path}"))

    async def verify_file(self, path: str, data: bytes) -> Verification:
        """The unit's own digest of `path` (sha256, else md5, else cksum) against ours."""
        output = await self._run(verify_command(path), f"checksum {path}")
        return check_digest(path, data, output)

    async def make_key(self, path: str, common_name: str) -> str | None:
        """openssl on the unit keeps (or first makes, P-256, umask 077) the key at `path` and
        prints the CSR for it; None when the unit has no working openssl."""
        key, new = shlex.quote(path), shlex.quote(path + ".new")
        subject = shlex.quote(f"/CN={common_name}")
        output = await self._run(
            f"if openssl version >/dev/null 2>&1; then (umask 077; [ -s {key} ] || "
            f"{{ openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out {new} "
            f"&& mv -f {new} {key}; }} && openssl req -new -key {key} -subj {subject}); "
            f"else echo NO''OPENSSL; fi", f"make a key pair at {path}")
        if "NOOPENSSL" in output:  # the echo as typed reads NO''OPENSSL: never confused
            return None
        return output.strip() + "\n"

    async def present(self) -> bool:
        """Whether anything answers a newline now (a prompt, or even garbage); UnitGone when
        the port itself went away, so the fixture reopens it."""
        heard = self._port.bytes_in
        try:
            await self._quiet(0.01)
            await self._port.write(b"\n")
            await self._port.read_until(self._attention, min(PRESENT_TIMEOUT,
                                                             self._settings.timeout))
        except UnitTimeout:
            return self._port.bytes_in > heard
        except ProtocolError:
            return True
        return True

    async def _run(self, command: str, what: str) -> str:
        """Run one command line; its output (newlines as "\\n"), or the UnitError. One line
        at a time: the tty has room for one line only while the shell is busy."""
        tag = next(self._tags)
        line = marked(tag, command).encode()
        if len(line) > MAX_LINE or _CONTROL.search(line[:-1]):
            # The tty acts on control bytes before the shell sees the line: Ctrl-U drops
            # what came before it (our quoting too), Ctrl-C and Ctrl-D cut it short.
            raise UnitRefused(f"the command to {what} does not fit in one line of the unit's "
                              f"console ({MAX_LINE} characters, no line breaks or control "
                              "characters)")
        heard = self._port.bytes_in
        await self._port.write(line)
        try:
            await self._expect(re.compile(rb"@FS%d@\r?\n" % tag))
        except UnitTimeout as exc:
            if self._port.bytes_in == heard:
                raise UnitTimeout(f"the unit did not answer when asked to {what} "
                                  f"within {self._settings.timeout:g} s") from exc
            raise ProtocolError(f"the unit did not run the command to {what}: it answered, "
                                "but its shell never printed our marker (garbled line, or "
                                "not a shell?)") from exc
        end = re.compile(rb"@FS%d@(\d+)\r?\n" % tag)
        try:
            body = await self._expect(end)
            await self._expect(self._prompt)
        except UnitTimeout as exc:
            raise UnitTimeout(f"the unit did not finish when asked to {what} "
                              f"within {self._settings.timeout:g} s") from exc
        found = end.search(body)
        assert found is not None  # _expect returned through this very pattern
        output = body[:found.start()].replace(b"\r\n", b"\n").decode(errors="replace")
        if len(found.group(1)) > 3:  # a shell's is 0-255; int() refuses 4301+ digits
            raise ProtocolError(f"the unit's exit status when asked to {what} is not a shell's: "
                                f"{found.group(1)[:20].decode()}... (garbled line?)")
        status = int(found.group(1))
        if status:
            raise UnitRefused(f"the unit could not {what}: exit status {status}: "
                              f"{output.strip()[-300:] or 'no message'}")
        return output

    async def _expect(self, pattern: re.Pattern[bytes]) -> bytes:
        """Read up to `pattern`, for as long as the unit keeps sending within the timeout
        (a long line's echo at a low baud rate takes longer than one timeout)."""
        while True:
            heard = self._port.bytes_in
            try:
                return await self._port.read_until(pattern, self._settings.timeout)
            except UnitTimeout:
                if self._port.bytes_in == heard:
                    raise

    def _kind(self, seen: bytes) -> str:
        for kind, pattern in (("password", _PASSWORD), ("login", _LOGIN),
                              ("prompt", self._prompt)):
            if pattern.search(seen):
                return kind
        return ""

    async def _login(self, kind: str) -> None:
        """Answer login prompts with the configured user and password until a shell prompt."""
        user, password = self._settings.login_user, self._settings.login_password
        if not user:
            raise UnitRefused("the unit asks for a login, but the fixture's console settings "
                              "have no login_user")
        sent_user = sent_password = False
        try:
            while kind != "prompt":
                kind = await self._last_prompt(kind)
                if (kind == "login" and sent_user) or (kind == "password" and sent_password):
                    raise UnitRefused(f"the unit refused the login as {user!r}; check the "
                                      "console's login_user and login_password")
                if kind == "login":
                    await self._port.write(user.encode() + b"\n")
                    sent_user = True
                elif kind == "password" and sent_user:
                    await self._port.write(password.encode() + b"\n")
                    sent_password = True
                elif kind == "password":  # a stale prompt: fail it to get `login:` back
                    await self._port.write(b"\n")
                if kind != "prompt":
                    kind = self._kind(await self._expect(self._attention))
        except UnitError as exc:
            if password and password in exc.reason:
                raise type(exc)(exc.reason.replace(password, "***")) from None
            raise

    async def _last_prompt(self, kind: str) -> str:
        """Login programs repeat prompts (one per newline we sent): act on the last one."""
        while kind != "prompt":
            more = await self._quiet(LOGIN_QUIET)
            if not more:
                break
            kind = self._kind(more) or self._kind(await self._expect(self._attention))
        return kind

    async def _quiet(self, quiet: float) -> bytes:
        """What the unit says until it is quiet for `quiet` seconds (Port.drain_input, with
        a deadline: a unit that never stops talking is garbled)."""
        try:
            async with asyncio.timeout(self._settings.timeout):
                return await self._port.drain_input(quiet)
        except TimeoutError as exc:
            raise ProtocolError("the unit does not stop talking (wrong baud rate?)") from exc
