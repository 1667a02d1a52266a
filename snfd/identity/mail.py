"""Outgoing mail (verification links, activation notices).

``SmtpMailer`` hands messages to a relay over SMTP (``smtp://host:port``
or ``smtps://``); ``FileMailer``, the embedded default, writes each message
as an RFC 5322 file under ``<state_dir>/mail`` so that a developer can
open the verification link without a mail server.
"""

from __future__ import annotations

import email.message
import email.utils
import os
import secrets
import time
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from twisted.internet import defer, threads
from twisted.logger import Logger

log = Logger(namespace="snfd.identity.mail")


class Mailer(Protocol):
    async def send(self, to: str, subject: str, body: str) -> None:
        """Deliver one message; ``OSError`` when it could not be handed on."""


def _message(sender: str, to: str, subject: str, body: str) -> email.message.EmailMessage:
    msg = email.message.EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate(usegmt=True)
    msg["Message-ID"] = email.utils.make_msgid(domain="snfd")
    msg.set_content(body)
    return msg


class FileMailer:
    """Writes messages to ``directory`` (created 0700), one file each."""

    def __init__(self, directory: Path, sender: str, reactor: Any = None):
        """``reactor``: write in its thread pool (``None``: in the caller's
        thread)."""
        self.directory = directory
        self._sender = sender
        self._reactor = reactor

    async def send(self, to: str, subject: str, body: str) -> None:
        data = bytes(_message(self._sender, to, subject, body))
        if self._reactor is None:
            path = self._write(data)
        else:
            path = await threads.deferToThreadPool(
                self._reactor, self._reactor.getThreadPool(), self._write, data)
        log.info("mail to {to} written to {path}", to=to, path=str(path))

    def _write(self, data: bytes) -> Path:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        path = self.directory / f"{stamp}-{secrets.token_hex(4)}.eml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return path


class SmtpMailer:
    """Sends through an SMTP relay with a timeout."""

    def __init__(self, reactor: Any, url: str, sender: str, timeout: float = 30.0):
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("expected smtp://host[:port] or smtps://host[:port]")
        self._reactor = reactor
        self._host = parts.hostname
        self._port = parts.port or (465 if parts.scheme == "smtps" else 25)
        self._tls = parts.scheme == "smtps"
        self._user = parts.username
        self._password = parts.password
        self._sender = sender
        self._timeout = timeout

    async def send(self, to: str, subject: str, body: str) -> None:
        from twisted.mail.smtp import sendmail

        data = bytes(_message(self._sender, to, subject, body))
        d = sendmail(self._host, self._sender, [to], data, port=self._port,
                     username=self._user, password=self._password,
                     requireAuthentication=False, requireTransportSecurity=self._tls)
        d.addTimeout(self._timeout, self._reactor)
        try:
            await d
        except defer.TimeoutError:
            raise OSError(f"SMTP relay {self._host}:{self._port} did not answer within"
                          f" {self._timeout:.0f}s") from None
        except Exception as e:
            raise OSError(f"SMTP relay {self._host}:{self._port} refused the mail:"
                          f" {e}") from None

