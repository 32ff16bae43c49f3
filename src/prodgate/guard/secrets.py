"""Credentials by their documented formats, private keys, JWTs, passwords and random tokens.

Three layers, most certain first:

1. Prefixed tokens (``AKIA``, ``ghp_``, ``sk-ant-``, ``xoxb-``, ...): each rule runs
   only when one of its literal prefixes is in the text (a substring test, far cheaper
   than a regex pass), then checks its exact shape; redacted and example forms
   (``AKIAXXXXXXXXXXXXXXXX``, ``...EXAMPLE``, ``sk-...``) are refused.
2. Structures: PEM private key blocks (a block with no END, such as a stream cut
   mid-key, runs to the end of the text), service-account JSON, JWTs whose header
   decodes to JSON with ``alg``, URLs and ADO strings with a password.
3. Context and randomness: a value assigned to a name that says secret (``token=``,
   ``"password":``, ``Authorization: Bearer``) and, optionally, long standalone tokens
   whose character statistics are those of random data. UUIDs, hex digests and git
   SHAs, base64 of ordinary text, paths and identifiers are not random enough or
   are recognised and left alone.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import math
import re
from collections.abc import Collection
from dataclasses import dataclass

from prodgate.guard.checksums import class_switches, entropy
from prodgate.guard.finding import SECRET, Finding


@dataclass(frozen=True, slots=True)
class _Rule:
    kind: str
    keywords: tuple[str, ...]  # one of these literal substrings must be in the text
    pattern: re.Pattern[str]
    score: float = 1.0


def _rule(kind: str, keywords: tuple[str, ...], pattern: str, score: float = 1.0) -> _Rule:
    # No letter, digit, _ or - may touch a token on either side.
    return _Rule(kind, keywords, re.compile(rf"(?<![\w\-])(?:{pattern})(?![\w\-])"), score)


_B64URL = r"[A-Za-z0-9_\-]"
_RULES: tuple[_Rule, ...] = (
    _rule("aws_access_key", ("AKIA", "ASIA", "ABIA", "ACCA", "A3T"),
          r"(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}"),
    _rule("gcp_api_key", ("AIza",), rf"AIza{_B64URL}{{35}}"),
    _rule("github_token", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
          r"gh[pousr]_[A-Za-z0-9]{36,251}"),
    _rule("github_token", ("github_pat_",), r"github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59,}"),
    _rule("gitlab_token", ("glpat-", "glptt-", "gldt-", "glrt-", "GR1348941"),
          rf"(?:glpat|glptt|gldt|glrt)-{_B64URL}{{20,300}}(?:\.[a-z0-9]{{9}})?"
          rf"|GR1348941{_B64URL}{{20}}"),
    _rule("slack_token", ("xox",), r"xox[abposre]-[0-9A-Za-z\-]{10,250}"),
    _rule("slack_token", ("xapp-",), r"xapp-\d-[A-Z0-9]+-\d+-[a-z0-9]+"),
    _rule("slack_webhook", ("hooks.slack.com",),
          r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/\-]{20,}"),
    _rule("stripe_key", ("sk_live_", "rk_live_", "sk_test_", "rk_test_", "whsec_"),
          r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{20,247}|whsec_[A-Za-z0-9+/]{32,}"),
    _rule("anthropic_key", ("sk-ant-",), rf"sk-ant-(?:api|admin|sid)\d\d-{_B64URL}{{80,120}}"),
    _rule("anthropic_key", ("sk-ant-",), rf"sk-ant-{_B64URL}{{32,}}", 0.9),
    _rule("openai_key", ("T3BlbkFJ",),
          rf"sk-(?!ant-){_B64URL}{{10,200}}T3BlbkFJ{_B64URL}{{10,200}}"),
    _rule("openai_key", ("sk-proj-", "sk-svcacct-", "sk-admin-"),
          rf"sk-(?:proj|svcacct|admin)-{_B64URL}{{40,250}}", 0.95),
    _rule("openai_key", ("sk-",), r"sk-[A-Za-z0-9]{48}", 0.9),
    _rule("llm_api_key", ("sk-",), r"sk-[a-f0-9]{32}|sk-[A-Za-z0-9]{32,47}|sk-[A-Za-z0-9]{49,64}",
          0.8),
    _rule("huggingface_token", ("hf_", "api_org_"), r"(?:hf|api_org)_[A-Za-z0-9]{34,40}"),
    _rule("groq_key", ("gsk_",), r"gsk_[A-Za-z0-9]{52}"),
    _rule("replicate_token", ("r8_",), r"r8_[A-Za-z0-9]{37}"),
    _rule("perplexity_key", ("pplx-",), r"pplx-[A-Za-z0-9]{48}"),
    _rule("xai_key", ("xai-",), r"xai-[A-Za-z0-9]{80}"),
    _rule("twilio_key", ("SK",), r"SK[0-9a-fA-F]{32}", 0.9),
    _rule("sendgrid_key", ("SG.",), rf"SG\.{_B64URL}{{22}}\.{_B64URL}{{43}}"),
    _rule("npm_token", ("npm_",), r"npm_[A-Za-z0-9]{36}"),
    _rule("pypi_token", ("pypi-AgE",), rf"pypi-AgE[A-Za-z0-9]{{10,20}}{_B64URL}{{40,}}"),
    _rule("shopify_token", ("shpat_", "shpss_", "shpca_", "shppa_"),
          r"shp(?:at|ss|ca|pa)_[a-fA-F0-9]{32}"),
    _rule("digitalocean_token", ("dop_v1_", "doo_v1_"), r"do[op]_v1_[a-f0-9]{64}"),
    _rule("databricks_token", ("dapi",), r"dapi[a-f0-9]{32}(?:-\d)?", 0.9),
    _rule("azure_key", ("Q~",), r"[A-Za-z0-9_~.]{3}\dQ~[A-Za-z0-9_~.\-]{31,34}", 0.9),
)  # fmt: skip

_AZURE = re.compile(
    r"(?i)(?:AccountKey|SharedAccessKey|SharedAccessSignature)\s*=\s*([A-Za-z0-9+/]{30,}={0,2})"
    r"|[?&;]sig=([A-Za-z0-9%+/]{30,}(?:=|%3D){0,2})"
)
_PEM_BEGIN = re.compile(r"-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----")
_PEM_END = re.compile(r"-----END (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----")
_PEM_BODY = re.compile(r"[A-Za-z0-9+/]{16}")
_JSON_KEY = re.compile(r'"private_key"\s*:\s*"')
_JSON_KEY_ID = re.compile(r'"private_key_id"\s*:\s*"([0-9a-f]{40})"')
_JWT = re.compile(
    rf"(?<![\w\-])eyJ{_B64URL}{{10,}}=*\.{_B64URL}{{2,}}=*\.(?:{_B64URL}+=*)?(?![\w\-])"
)
_URL_CREDS = re.compile(
    # The user may be empty: redis://:password@host.
    r"(?i)\b[a-z][a-z0-9+.\-]{1,20}://([^\s:/@\"'<>]{0,128}):([^\s@/\"'<>]{1,256})@"
    r"[A-Za-z0-9\[]"
)
_AWS_CONTEXT = re.compile(r"(?i)aws|amazon|secret.?access|secretkey")
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")

# Where a name that says "secret" may stand: each anchor is found with str.find on the
# lower-cased text and checked here (a case-insensitive alternation over the whole text
# costs a hundred times more).
_ANCHOR_OK = {
    "pass": re.compile(r"pass(?:w(?:or)?d|phrase|code)?s?(?![a-z])"),
    "pwd": re.compile(r"pwd(?![a-z])"),
    "secret": re.compile(r"secret"),
    "token": re.compile(r"token(?!s|iz)"),
    "key": re.compile(r"key(?![a-z])"),
    "credential": re.compile(r"credentials?(?![a-z])"),
    "bearer": re.compile(r"bearer(?![a-z])"),
}
_SECRET_WORDS = tuple(_ANCHOR_OK)
_ASSIGN = re.compile(
    r"[\w.\-]{0,30}[\"'\]]{0,2}[ \t]*(?::=|=>|=|:|[ \t](?:is|was)[ \t])[ \t]*"
    r"(?:[\"'`]|Bearer[ \t]+|Basic[ \t]+|token[ \t]+)?"
    r"([^\s\"'`,;<>(){}\[\]]{4,300})"
)
_SPACED = re.compile(r"[ \t]+([A-Za-z0-9@#$%^&*!?_+~/=.][^\s\"'`,;<>(){}\[\]]{5,300})")
_NOT_SECRET_NAME = re.compile(
    r"(?i)(?:^|[_.\-\s\"'])(?:hash|sha\d*|digest|checksum|commit|etag|fingerprint|nonce|id|uuid"
    r"|count|length|limit|max|min|type|url|uri|path|file|name|expiry|expires|expiration|ttl"
    r"|usage|tokens|public|pub|page|cursor|continuation|next|signature|salt|request|trace"
    r"|correlation|session_id)(?:$|[_.\-\s\"':=])"
)
_CONN_CONTEXT = re.compile(r"(?i)(?:server|data source|host|hostname|uid|user id|database)\s*=")
_IDENTIFIER = re.compile(r"[a-z_]+|[A-Z_]+_[A-Z_]+")  # user_password, DB_PASSWORD
_TEMPLATE_VAR = re.compile(r"\$\{?\w+\}?|\{\{?\s*\w+\s*\}?\}|%\(\w+\)s|%s|<\w+>")
# Random-looking but public: ssh public keys (AAAAB3..., AAAAC3...), subresource
# integrity digests, Stripe publishable keys.
_PUBLIC_TOKEN = ("AAAAB3", "AAAAC3", "AAAAE2", "sha1-", "sha256-", "sha384-", "sha512-",
                 "pk_live_", "pk_test_")  # fmt: skip
_PUBLIC_BLOCK = re.compile(r"-----BEGIN (?:CERTIFICATE|PUBLIC KEY|[A-Z ]*PUBLIC KEY[A-Z ]*)-----")
# A quoted value after -p (an unquoted -pX is a compiler flag as often as a password),
# or any value after --password.
_CLI_PASSWORD = re.compile(
    r"(?<![\w-])-p(['\"])([^'\"\s]{4,100})\1|(?<![\w-])--password[= ]['\"]?([^\s'\"]{4,100})"
)
# "the password for the VPN config file: ...", "the password of the till laptop is ...":
# a few words between the name and its value, in prose.
_PROSE_ASSIGN = re.compile(
    r"(?:[ \t]+(?:for|of|to|on|in|the|a|an|my|our|your|this|that|new|shared|\w{2,20}))"
    r"{1,6}?[ \t]*(?::|[ \t](?:is|was)[ \t])[ \t]*[\"'`]?([^\s\"'`,;<>(){}\[\]]{6,100})"
)
_BASIC = re.compile(r"(?<![\w-])Basic[ \t]+([A-Za-z0-9+/]{8,}={0,2})(?![\w+/=])")
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_NAME_BEFORE = re.compile(r"([\w.\-]+)[\"']?\s*[:=]\s*[\"']?$")
_B64_LINE = re.compile(r"[A-Za-z0-9+/]{40,}={0,2}")
_TOKEN = re.compile(r"(?<![\w+/=\-.])[A-Za-z0-9+/_\-]{32,}={0,2}(?![\w+/=\-])")
_UUID = re.compile(
    r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
)
_HEX = re.compile(r"(?:0x)?[0-9a-fA-F]+")
_CODE_REF = re.compile(r"[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+|[A-Z][A-Z0-9_]*_[A-Z0-9_]+")

_PLACEHOLDER_WORDS = (
    "xxxx", "****", "....", "…", "example", "your", "redacted", "placeholder", "dummy",
    "changeme", "replace", "insert", "here", "sample", "fake", "<", ">", "${", "{{", "%(",
    "hidden", "masked", "secret_key", "password", "token",
)  # fmt: skip
_PASSWORD_PLACEHOLDERS = frozenset(
    {"none", "null", "nil", "true", "false", "undefined", "str", "string", "required",
     "optional", "empty", "prompt", "env", "secret", "pass", "passwd", "password", "pwd"}
)  # fmt: skip

KINDS = tuple(
    dict.fromkeys(
        [r.kind for r in _RULES]
        + ["aws_secret_key", "azure_key", "gcp_service_account", "private_key", "jwt"]
        + ["connection_string", "password", "high_entropy"]
    )
)


def _placeholder(value: str) -> bool:
    """Redacted, example and template forms of a secret."""
    lower = value.lower()
    if any(w in lower for w in _PLACEHOLDER_WORDS):
        return True
    run = 1
    for a, b in itertools.pairwise(value):
        run = run + 1 if a == b else 1
        if run >= 6:
            return True
    ascending = sum(1 for a, b in itertools.pairwise(value) if ord(b) - ord(a) == 1)
    return len(value) > 8 and ascending > len(value) * 0.5


def _b64_text(token: str) -> bool:
    """Base64 of ordinary text (``SGVsbG8gd29ybGQ=``) is an encoding, not a secret."""
    padded = token + "=" * (-len(token) % 4)
    try:
        if "-" in token or "_" in token:
            raw = base64.urlsafe_b64decode(padded)
        else:
            raw = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return False
    if len(raw) < 8:
        return False
    try:
        decoded = raw.decode("utf-8")  # random bytes are seldom valid UTF-8
    except UnicodeDecodeError:
        return False
    printable = sum(1 for ch in decoded if ch.isprintable() or ch in "\t\r\n")
    return printable / len(decoded) > 0.9


def _random_enough(token: str, *, standalone: bool) -> bool:
    """Character statistics of random data rather than of words, ids or digests."""
    n = len(token)
    # Hex alone is a digest, a commit or an id unless a secret's name stands before it
    # (api_secret: "5b3a...": webhook and client secrets are often hex); a UUID with its
    # dashes is an id either way.
    if standalone and (_UUID.fullmatch(token) or _HEX.fullmatch(token)):
        return False
    if "-" in token and _UUID.fullmatch(token):
        return False
    digits = sum(ch.isdigit() for ch in token)
    letters = sum(ch.isalpha() for ch in token)
    if not digits or not letters:
        return False
    if standalone:
        upper = sum(ch.isupper() for ch in token)
        if upper < 2 or letters - upper < 2:
            return False
        threshold = min(4.6, math.log2(n) - 1.0)
        if entropy(token) < threshold or class_switches(token) < 0.3:
            return False
    elif entropy(token) < 3.0 or class_switches(token) < 0.25:
        return False
    return not _b64_text(token.rstrip("="))


def _path_like(token: str) -> bool:
    parts = [p for p in token.split("/") if p]
    words = sum(1 for p in parts if len(p) >= 3 and (p.islower() or p.isdigit()))
    return "/" in token and words >= 2


class SecretsDetector:
    """Credentials in text; ``kinds`` limits what is scanned, ``entropy`` the last layer."""

    name = "secrets"
    category = SECRET

    def __init__(self, kinds: Collection[str] | None = None, entropy: bool = True) -> None:
        wanted = set(KINDS) if kinds is None else set(kinds)
        unknown = wanted - set(KINDS)
        if unknown:
            raise ValueError(f"unknown secret kinds: {sorted(unknown)}; known: {list(KINDS)}")
        self.kinds = frozenset(wanted)
        self.entropy = entropy
        self._rules = tuple(r for r in _RULES if r.kind in wanted)
        self._keywords = frozenset(k for r in self._rules for k in r.keywords)

    def _finding(self, kind: str, score: float, start: int, end: int) -> Finding:
        return Finding(SECRET, kind, self.name, score, start, end)

    def scan(self, text: str) -> list[Finding]:
        """All credentials in ``text``; never raises on a ``str``."""
        if not isinstance(text, str) or len(text) < 8:
            return []
        found: list[Finding] = []
        kinds = self.kinds
        if "-----BEGIN" in text or '"private_key"' in text:
            self._keys(text, found)
        # Every token-shaped secret is a run of 16 or more non-space characters: a text
        # without one (most prose) skips all the token rules at the cost of one pass.
        long = _long_words(text)
        if long:
            joined = " ".join(text[s:e] for s, e in long)
            self._tokens(text, joined, found)
        if "Basic " in text and "password" in kinds:
            self._basic_auth(text, found)
        if ("-p" in text or "--password" in text) and "password" in kinds:
            self._cli_passwords(text, found)
        lower = text.lower()
        if any(w in lower for w in _SECRET_WORDS):
            self._assignments(text, lower, found)
        if long and self.entropy and "high_entropy" in kinds:
            self._standalone(text, long, found)
        return found

    def _tokens(self, text: str, joined: str, found: list[Finding]) -> None:
        kinds = self.kinds
        present = {k for k in self._keywords if k in joined}
        for rule in self._rules if present else ():
            if not present.isdisjoint(rule.keywords):
                for m in rule.pattern.finditer(text):
                    if _placeholder(m.group()[4:]):
                        continue
                    if any(f.start == m.start() for f in found):
                        continue  # a looser rule of the same provider
                    found.append(self._finding(rule.kind, rule.score, m.start(), m.end()))
        if "eyJ" in joined and "jwt" in kinds:
            self._jwts(text, found)
        if "://" in joined and "@" in joined and "connection_string" in kinds:
            self._url_credentials(text, found)
        if "azure_key" in kinds and (
            "Access" in joined or "AccountKey" in joined or "sig=" in joined
        ):
            for m in _AZURE.finditer(text):
                group = 1 if m.group(1) else 2
                if not _placeholder(m.group(group)):
                    found.append(self._finding("azure_key", 1.0, m.start(group), m.end(group)))
        if "aws_secret_key" in kinds:
            self._aws_secrets(text, found)

    # structures -----------------------------------------------------------------------

    def _keys(self, text: str, found: list[Finding]) -> None:
        spans: list[tuple[int, int]] = []
        service = "service_account" in text or "private_key_id" in text
        kind = "gcp_service_account" if service else "private_key"
        if kind in self.kinds:
            for m in _JSON_KEY.finditer(text):
                end = m.end()
                while end < len(text) and not (text[end] == '"' and text[end - 1] != "\\"):
                    end += 1
                if _PEM_BODY.search(text, m.end(), end) or "BEGIN" in text[m.end() : end]:
                    spans.append((m.end(), end))
                    found.append(self._finding(kind, 1.0, m.end(), end))
            for m in _JSON_KEY_ID.finditer(text):
                found.append(self._finding(kind, 0.9, m.start(1), m.end(1)))
        if "private_key" not in self.kinds:
            return
        covered = 0
        for m in _PEM_BEGIN.finditer(text):
            if m.start() < covered or any(s <= m.start() < e for s, e in spans):
                continue
            end_m = _PEM_END.search(text, m.end())
            body_end = end_m.start() if end_m else len(text)
            has_body = _PEM_BODY.search(text, m.end(), body_end) is not None
            if end_m is None:
                # Cut mid-key (a stream, a truncated paste): the rest of the text is key.
                found.append(
                    self._finding("private_key", 1.0 if has_body else 0.9, m.start(), len(text))
                )
                break
            covered = end_m.end()
            if has_body:
                found.append(self._finding("private_key", 1.0, m.start(), end_m.end()))

    def _jwts(self, text: str, found: list[Finding]) -> None:
        for m in _JWT.finditer(text):
            head = m.group().split(".", 1)[0]
            try:
                header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
            except (ValueError, binascii.Error):
                continue
            if isinstance(header, dict) and "alg" in header:
                signed = len(m.group().rsplit(".", 1)[1]) >= 16
                found.append(self._finding("jwt", 1.0 if signed else 0.9, m.start(), m.end()))

    def _url_credentials(self, text: str, found: list[Finding]) -> None:
        for m in _URL_CREDS.finditer(text):
            password = m.group(2)
            if _placeholder(password) or password.lower() in _PASSWORD_PLACEHOLDERS:
                continue
            if _TEMPLATE_VAR.fullmatch(password):
                continue
            found.append(self._finding("connection_string", 1.0, m.start(2), m.end(2)))

    def _cli_passwords(self, text: str, found: list[Finding]) -> None:
        """A password on a command line: ``mysql -p'...'``, ``--password=...``."""
        for m in _CLI_PASSWORD.finditer(text):
            group = 2 if m.group(2) is not None else 3
            value = m.group(group)
            if _password(value) and not _TEMPLATE_VAR.fullmatch(value):
                found.append(self._finding("password", 0.9, m.start(group), m.end(group)))

    def _basic_auth(self, text: str, found: list[Finding]) -> None:
        """``Authorization: Basic <base64 of user:password>``: base64 of text, yet a secret."""
        for m in _BASIC.finditer(text):
            token = m.group(1)
            try:
                decoded = base64.b64decode(token + "=" * (-len(token) % 4)).decode("utf-8")
            except (binascii.Error, ValueError):
                continue
            user, sep, password = decoded.partition(":")
            if sep and user and password and decoded.isprintable():
                found.append(self._finding("password", 0.9, m.start(1), m.end(1)))

    # context --------------------------------------------------------------------------

    def _aws_secrets(self, text: str, found: list[Finding]) -> None:
        starts = [f.end for f in found if f.kind == "aws_access_key"]
        lower = text.lower()
        if "aws" in lower or "secret" in lower or "amazon" in lower:
            starts += [m.end() for m in _AWS_CONTEXT.finditer(text)]
        seen: set[int] = set()
        for at in starts:
            for m in _AWS_SECRET.finditer(text, at, min(len(text), at + 120)):
                token = m.group()
                if m.start() in seen or _placeholder(token) or _HEX.fullmatch(token):
                    continue
                if entropy(token) >= 3.8 and class_switches(token) >= 0.3:
                    seen.add(m.start())
                    found.append(self._finding("aws_secret_key", 1.0, m.start(), m.end()))
                break

    def _assignments(self, text: str, lower: str, found: list[Finding]) -> None:
        want_password = "password" in self.kinds
        want_conn = "connection_string" in self.kinds
        want_token = "high_entropy" in self.kinds
        for base, at in _anchors(lower):
            word = _ANCHOR_OK[base].match(lower, at)
            if word is None:
                continue
            if at and lower[at - 1].isalpha() and not text[at].isupper():
                prev = lower[at - 1]
                if base in ("pass", "pwd") or prev not in "ytnel":  # bypass; apikey, authkey
                    continue
            m = _ASSIGN.match(text, word.end())
            prose = False
            if m is None and base in ("pass", "pwd"):
                m = _PROSE_ASSIGN.match(text, word.end())
                prose = m is not None
            if m is None:
                # "Bearer <token>", "password Summer2024!", "signing secret <hex>": a value
                # after a space only, so it must look like one (not "pass --force").
                m = _SPACED.match(text, word.end())
                if m is None or (word.group() == "pass" and base == "pass"):
                    continue
                spaced = m.group(1)
                if not (any(c.isdigit() for c in spaced) and any(c.isalpha() for c in spaced)):
                    continue
            start, end = m.start(1), m.end(1)
            value = m.group(1)
            quote = text[start - 1]
            if quote in "'\"`":
                # A quoted value runs to its closing quote: 'correct horse battery staple'.
                close = text.find(quote, start)
                if 0 < close - start <= 200 and "\n" not in text[start:close]:
                    end, value = close, text[start:close]
            while value and value[-1] in ".!?)" and (end == len(text) or text[end].isspace()):
                if value[-1] != "." and len(value) > 6:
                    break
                value, end = value[:-1], end - 1
            if not value or any(f.start < end and start < f.end for f in found):
                continue
            if text[end : end + 1] == "(":
                continue  # a call: password = read_password(...)
            name_start = at
            while name_start > 0 and (
                text[name_start - 1].isalnum() or text[name_start - 1] in "_.-"
            ):
                name_start -= 1
            # In prose ("the password for the config file: ...") the name is the word.
            name_end = word.end() if prose else m.start(1)
            name = _snake(text[name_start:name_end].split("=")[0])
            if base in ("pass", "pwd"):
                if "://" in value or _NOT_SECRET_NAME.search(name):
                    continue
                if _password(value) and (want_password or want_conn):
                    line_start = text.rfind("\n", 0, start) + 1
                    conn = ";" in text[line_start:end] and _CONN_CONTEXT.search(
                        text, line_start, end
                    )
                    kind = "connection_string" if conn else "password"
                    if kind in self.kinds:
                        found.append(self._finding(kind, 0.8, start, end))
                continue
            if not want_token or len(value) < 16 or _NOT_SECRET_NAME.search(name):
                continue
            if "://" in value or " " in value or _CODE_REF.fullmatch(value) or _placeholder(value):
                continue
            if _random_enough(value.rstrip("="), standalone=False):
                found.append(self._finding("high_entropy", 0.8, start, end))

    def _standalone(self, text: str, long: list[tuple[int, int]], found: list[Finding]) -> None:
        public: list[tuple[int, int]] = []
        if "-----BEGIN" in text:
            for m in _PUBLIC_BLOCK.finditer(text):
                end = text.find("-----END", m.end())
                public.append((m.start(), len(text) if end < 0 else end))
        for at, until in long:
            if until - at >= 32 and not any(s <= at < e for s, e in public):
                self._random_tokens(text, at, until, found)

    def _random_tokens(self, text: str, at: int, until: int, found: list[Finding]) -> None:
        for m in _TOKEN.finditer(text, at, until):
            token = m.group()
            start, end = m.start(), m.end()
            if any(f.start < end and start < f.end for f in found):
                continue
            word_start = max(text.rfind(" ", 0, start), text.rfind("\n", 0, start)) + 1
            prefix = text[word_start:start]
            if "://" in prefix or prefix.startswith(("/", "~", ".")) or "\\" in prefix:
                continue
            if "base64," in prefix or token.startswith(_PUBLIC_TOKEN):
                continue
            if end - start >= 60 and _in_base64_block(text, start, end):
                continue
            named = _NAME_BEFORE.search(text, max(0, start - 48), start)
            if named and _NOT_SECRET_NAME.search(_snake(named.group(1))):
                continue  # digest: ..., request_id=..., nextPageToken: ...
            if _path_like(token) or _placeholder(token):
                continue
            if _random_enough(token.rstrip("="), standalone=True):
                found.append(self._finding("high_entropy", 0.6, start, end))


def _snake(name: str) -> str:
    """``nextPageToken`` -> ``next_Page_Token``: camelCase words become separable."""
    return _CAMEL.sub(r"\1_\2", name)


def _long_words(text: str) -> list[tuple[int, int]]:
    """Spans of the whitespace-free runs of 16 characters or more (str.split is C-fast)."""
    spans: list[tuple[int, int]] = []
    pos = 0
    for word in [w for w in text.split() if len(w) >= 16]:
        # The first occurrence after the last long word: a shorter word between them
        # cannot contain it.
        at = text.find(word, pos)
        spans.append((at, at + len(word)))
        pos = at + len(word)
    return spans


def _in_base64_block(text: str, start: int, end: int) -> bool:
    """A whole line of a block of base64 lines: a MIME attachment, an encoded file.

    Private keys in such blocks are found by their BEGIN line, not here.
    """
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end < 0 else line_end
    if text[line_start:start].strip() or text[end:line_end].strip():
        return False
    before = text[text.rfind("\n", 0, max(0, line_start - 1)) + 1 : max(0, line_start - 1)]
    after_end = text.find("\n", line_end + 1)
    after = text[line_end + 1 : len(text) if after_end < 0 else after_end]
    return any(_B64_LINE.fullmatch(line.strip()) for line in (before, after))


def _anchors(lower: str) -> list[tuple[str, int]]:
    """Each place an anchor word starts, in text order."""
    found: list[tuple[str, int]] = []
    for base in _SECRET_WORDS:
        at = lower.find(base)
        while at >= 0:
            found.append((base, at))
            at = lower.find(base, at + len(base))
    found.sort(key=lambda pair: pair[1])
    return found


def _password(value: str) -> bool:
    """A password value rather than a name, a placeholder or a sentence's next word."""
    if len(value) < 6 or value.lower() in _PASSWORD_PLACEHOLDERS or _placeholder(value):
        return False
    if value.startswith(("$", "%", "{", "os.", "process.", "env")) or "(" in value:
        return False
    if _CODE_REF.fullmatch(value) or _IDENTIFIER.fullmatch(value):
        return False
    return not value.isalpha() or not value.islower()
