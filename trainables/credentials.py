"""Credentials written into URIs: found, redacted for messages, and refused.

A sweep records its URIs: the tracking URI and Tune storage in ``sweep_config.json``, the
sweep description beside Tune's state and Tune's own pickled state, the judge URL in every
trial's MLflow params, and all of them on the console. A password in the URI
(``postgresql://user:pw@host/db``), a key in its query (``s3://bucket?access_key=...&
secret_key=...``, ``https://judge/score?token=...``) would be recorded with them. So such URIs
are refused before anything starts, with a message that shows the URI redacted and says where
the credential goes instead (the environment, a credentials file, the endpoint's own auth).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from trainables.errors import UserError

#: Query parameters that hold a credential (``access_key``, ``secret_key``, ``token``,
#: ``X-Amz-Signature``, ``api_key``, ``password``, ...).
SECRET_PARAM = re.compile(r"(^|[_.-])(token|password|passwd|pwd|secret|key|signature|sig|credentials?|auth)"
                          r"([_.-]|$)", re.IGNORECASE)


def secrets_in_uri(uri: str, *, user_is_secret: bool = False) -> list[str]:
    """What in ``uri`` is a credential: ``'a password'``, ``'a user name'`` (when
    ``user_is_secret``: HTTP basic auth) and the names of secret query parameters."""
    parts = urlsplit(uri)
    found = []
    if parts.password is not None:
        found.append("a password")
    elif user_is_secret and parts.username:
        found.append("a user name")
    found += [f"'{k}'" for k, _ in parse_qsl(parts.query, keep_blank_values=True) if SECRET_PARAM.search(k)]
    return found


def redact_uri(uri: str) -> str:
    """``uri`` with its user information and secret query values replaced by ``***``."""
    parts = urlsplit(uri)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = "&".join(f"{k}=***" if SECRET_PARAM.search(k) else f"{k}={v}"
                     for k, v in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def refuse_secrets(field: str, uri: str, instead: str, *, user_is_secret: bool = False) -> None:
    """UserError naming ``field`` when ``uri`` holds a credential; ``instead`` says where it
    belongs."""
    found = secrets_in_uri(uri, user_is_secret=user_is_secret)
    if found:
        raise UserError(field, f"credentials ({', '.join(found)}) in the URI ({redact_uri(uri)}) would be "
                               f"recorded with the sweep; {instead}")
