"""The secrets detector: each provider's format at its exact span, look-alikes left alone."""

from __future__ import annotations

import base64
import json
import random
import string
import time

import pytest

from prodgate.guard.finding import SECRET
from prodgate.guard.secrets import KINDS, SecretsDetector

DETECTOR = SecretsDetector()
R = random.Random(7)
B62 = string.ascii_letters + string.digits


def rnd(n: int, alphabet: str = B62) -> str:
    return "".join(R.choice(alphabet) for _ in range(n))


def spans(text: str, detector: SecretsDetector = DETECTOR) -> list[tuple[str, str]]:
    return [(f.kind, text[f.start : f.end]) for f in detector.scan(text)]


def jwt() -> str:
    def part(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part({'sub': '42'})}.{rnd(43, B62 + '-_')}"


AWS_ID = "AKIA" + rnd(16, string.ascii_uppercase + "234567")
AWS_SECRET = rnd(40, B62 + "/+")
PEM_BODY = base64.b64encode(R.randbytes(300)).decode()
PEM = (
    f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY[:64]}\n{PEM_BODY[64:]}\n"
    "-----END RSA PRIVATE KEY-----"
)

CASES = [
    (f"export AWS_ACCESS_KEY_ID={AWS_ID}", "aws_access_key", AWS_ID),
    (f"aws_secret_access_key = {AWS_SECRET}", "aws_secret_key", AWS_SECRET),
    (f"{AWS_ID},{AWS_SECRET}", "aws_secret_key", AWS_SECRET),
    (f"key=AIza{'x1Y2' * 8}abc", "gcp_api_key", f"AIza{'x1Y2' * 8}abc"),
    (f"GITHUB_TOKEN=ghp_{'a1B2' * 9}", "github_token", f"ghp_{'a1B2' * 9}"),
    (f"pat github_pat_{'A1b2' * 5}xy_{rnd(59)} ok", "github_token", None),
    (f"glpat-{'Ab3_' * 5}", "gitlab_token", f"glpat-{'Ab3_' * 5}"),
    (
        f"SLACK_BOT_TOKEN=xoxb-{rnd(12, string.digits)}-{rnd(13, string.digits)}-{rnd(24)}",
        "slack_token",
        None,
    ),
    (
        f"hook https://hooks.slack.com/services/T0123ABCD/B0123456789/{rnd(24)}",
        "slack_webhook",
        None,
    ),
    (f"stripe.api_key = 'sk_live_{rnd(24)}'", "stripe_key", None),
    (
        f"OPENAI_API_KEY=sk-proj-{rnd(60, B62 + '-_')}T3BlbkFJ{rnd(60, B62 + '-_')}",
        "openai_key",
        None,
    ),
    (f"legacy sk-{rnd(20)}T3BlbkFJ{rnd(20)} key", "openai_key", None),
    (f"x-api-key: sk-ant-api03-{rnd(93, B62 + '-_')}AA", "anthropic_key", None),
    (f"HF_TOKEN=hf_{rnd(34, string.ascii_letters)}", "huggingface_token", None),
    (f"GROQ_API_KEY=gsk_{rnd(52)}", "groq_key", None),
    (f"REPLICATE_API_TOKEN=r8_{rnd(37)}", "replicate_token", None),
    (f"TWILIO_API_KEY=SK{rnd(32, '0123456789abcdef')}", "twilio_key", None),
    (f"SENDGRID_API_KEY=SG.{rnd(22)}.{rnd(43)}", "sendgrid_key", None),
    (f"//registry.npmjs.org/:_authToken=npm_{rnd(36)}", "npm_token", None),
    (f"TWINE_PASSWORD=pypi-AgEIcHlwaS5vcmc{rnd(70, B62 + '-_')}", "pypi_token", None),
    (
        f"DefaultEndpointsProtocol=https;AccountName=x;AccountKey={rnd(86, B62 + '+/')}==;"
        "EndpointSuffix=core.windows.net",
        "azure_key",
        None,
    ),
    (f"Here is the key:\n{PEM}\nthanks", "private_key", PEM),
    (f"Authorization: Bearer {jwt()}", "jwt", None),
    (
        "DATABASE_URL=postgresql://claims:s3cr3t-Pa55@db.internal:5432/claims",
        "connection_string",
        "s3cr3t-Pa55",
    ),
    (
        "Server=tcp:x.net;Database=c;User Id=app;Password=Xk9!wop93T;Encrypt=true",
        "connection_string",
        "Xk9!wop93T",
    ),
    ('"password": "Summer2024!"', "password", "Summer2024!"),
    ("login admin / password Tr0ub4dor&3", "password", "Tr0ub4dor&3"),
    ("Authorization: Basic YWRtaW46aHVudGVyMg==", "password", "YWRtaW46aHVudGVyMg=="),
    (f"client_secret: {rnd(32)}", "high_entropy", None),
    (f"the blob {rnd(20)}9{rnd(19)} was attached", "high_entropy", None),
]


@pytest.mark.parametrize(("text", "kind", "value"), CASES)
def test_each_kind_is_found_at_its_exact_span(text: str, kind: str, value: str | None) -> None:
    found = spans(text)
    kinds = [k for k, _ in found]
    assert kind in kinds, found
    if value is not None:
        assert (kind, value) in found
    else:
        # The span is the whole token: it starts after a separator and ends the token.
        span = dict(found)[kind]
        assert span in text
        assert len(span) >= 16
        end = text.index(span) + len(span)
        assert end == len(text) or not text[end].isalnum()


def test_an_unterminated_private_key_runs_to_the_end_of_the_text() -> None:
    text = f"Sure, here it is:\n-----BEGIN OPENSSH PRIVATE KEY-----\n{PEM_BODY[:100]}"
    (finding,) = DETECTOR.scan(text)
    assert finding.kind == "private_key"
    assert text[finding.start :].startswith("-----BEGIN")
    assert finding.end == len(text)
    # Even cut right after the header: the key is coming.
    cut = "-----BEGIN PRIVATE KEY-----\n"
    assert [(f.kind, f.end) for f in DETECTOR.scan(cut)] == [("private_key", len(cut))]


def test_a_service_account_json_private_key_is_one_finding() -> None:
    key = f"-----BEGIN PRIVATE KEY-----\\n{PEM_BODY[:64]}\\n-----END PRIVATE KEY-----\\n"
    text = json.dumps({"type": "service_account", "private_key": "K"}).replace('"K"', f'"{key}"')
    assert spans(text) == [("gcp_service_account", key)]


def test_findings_carry_category_detector_and_a_score() -> None:
    (finding,) = DETECTOR.scan(f"GITHUB_TOKEN=ghp_{'a1B2' * 9}")
    assert (finding.category, finding.detector, finding.score) == (SECRET, "secrets", 1.0)
    assert finding.placeholder == "[GITHUB_TOKEN]"


LOOK_ALIKES = [
    "uuid 550e8400-e29b-41d4-a716-446655440000, session_id: 9b2f4c1e-8d3a-4f5b-9c7e-1a2b3c4d5e6f",
    "commit 3f786850e387550fdab836ed7e6dc881de23001b",
    "sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    'checksum=da39a3ee5e6b4b0d3255bfef95601890afd80709 etag: "d41d8cd98f00b204e9800998ecf8427e"',
    '"integrity": "sha512-z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kx"',
    "SGVsbG8gd29ybGQsIHRoaXMgaXMgYSB0ZXN0IG1lc3NhZ2UgZm9yIHRoZSBjbGFpbXM=",
    "/usr/lib/python3.11/site-packages/numpy/core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so",
    r"C:\Users\Alice\AppData\Local\Programs\ClaimsUploaderDesktopClient\resources\app.asar",
    "https://docs.acme-insurance.com/claims/getting-started/authentication-and-api-keys",
    "postgres://user:password@localhost:5432/claims and mysql://root@localhost/claims",
    "DATABASE_URL=postgres://app:${DB_PASSWORD}@db:5432/app",
    "OPENAI_API_KEY=sk-... and AKIAXXXXXXXXXXXXXXXX and AKIAIOSFODNN7EXAMPLE",
    "api_key=your-api-key-here; token: <YOUR_TOKEN>; SECRET_KEY=${SECRET_KEY}",
    "GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    'api_key = os.environ["OPENAI_API_KEY"]; password = getpass.getpass()',
    "password: ********; DB_PASSWORD=changeme; STRIPE_KEY=sk_live_************************",
    "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----",
    "Authorization: Bearer <token>",
    "test_claims_triage_escalates_low_confidence_decisions_to_reviewers",
    "ClaimsTriageServiceRolloutControllerFactoryImplementation",
    "max_tokens: 4096, tokens_used=1834, token_type=Bearer, auth_method=oauth2_client_credentials",
    "password_reset_url=https://portal.acme-insurance.com/reset",
    "Reset your password: click the link. The secret to fast claims is good triage.",
    "pass --force to overwrite; passport number: X1234567",
    f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{rnd(43, B62 + '+/')} alice@laptop",
    f"pk_live_{rnd(24)} is the publishable key",
    f"-----BEGIN CERTIFICATE-----\n{base64.b64encode(R.randbytes(96)).decode()}\n-----END CERT",
    f'<img src="data:image/png;base64,iVBORw0KGgo{base64.b64encode(R.randbytes(60)).decode()}">',
    "Please keep your password and API keys secret and never paste them in tickets.",
    f"nextPageToken: {rnd(40)}, request_id={rnd(36)}, digest: {rnd(44)}",
]


@pytest.mark.parametrize("text", LOOK_ALIKES)
def test_look_alikes_are_not_flagged(text: str) -> None:
    assert spans(text) == []


def test_kinds_and_entropy_limit_what_is_scanned() -> None:
    text = f"GITHUB_TOKEN=ghp_{'a1B2' * 9} and the blob {rnd(20)}9{rnd(19)} here"
    assert {k for k, _ in spans(text)} == {"github_token", "high_entropy"}
    assert [k for k, _ in spans(text, SecretsDetector(kinds=["github_token"]))] == ["github_token"]
    assert [k for k, _ in spans(text, SecretsDetector(entropy=False))] == ["github_token"]
    with pytest.raises(ValueError, match="unknown secret kinds"):
        SecretsDetector(kinds=["lottery_ticket"])
    assert {"aws_access_key", "private_key", "jwt", "connection_string", "high_entropy"} <= set(
        KINDS
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "-----BEGIN",
        "-----BEGIN PRIVATE KEY-----",
        '"private_key": "',
        "eyJ" + "A" * 50 + "." + "B" * 50 + ".",
        "eyJhbGciOiJIUzI1NiJ9.%%%.abc",
        "\x00\xff" * 500,
        "\ud800 lone surrogate ghp_" + "a" * 36,
        "password=" * 1000,
        "token: " * 1000,
        "x" * 100_000,
        "://@" * 1000,
        "AccountKey=" + "=" * 200,
        "secret " + "é" * 300,
    ],
)
def test_odd_input_never_raises(text: str) -> None:
    for f in DETECTOR.scan(text):
        assert 0 <= f.start < f.end <= len(text)


def test_random_input_never_raises() -> None:
    r = random.Random(2)
    alphabet = B62 + " -_=:/+.@\"'\n{}[]()~" + "é€"
    for _ in range(300):
        text = "".join(r.choice(alphabet) for _ in range(r.randint(0, 400)))
        for f in DETECTOR.scan(text):
            assert 0 <= f.start < f.end <= len(text)


def test_prose_is_scanned_fast() -> None:
    text = (
        "Hello, I am writing about my claim for the water damage in the kitchen last week. "
        "The plumber came on Tuesday and said the pipe under the sink had burst. Could you "
        "tell me which key documents you need and what the password for the portal is? "
    ) * 5
    text = text[:1000]
    DETECTOR.scan(text)
    started = time.perf_counter()
    for _ in range(200):
        DETECTOR.scan(text)
    assert (time.perf_counter() - started) / 200 < 0.002  # ~40 us measured; generous for CI


def test_hostile_input_is_scanned_in_linear_time() -> None:
    for text in ("-----BEGIN PRIVATE KEY-----" * 3000, "password=x " * 9000, "eyJhbGciOi." * 9000):
        started = time.perf_counter()
        DETECTOR.scan(text)
        assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize(
    "text",
    [
        'api_secret: "5b3a9b84dc2381ac5960b926cc9a072b"',
        "WEBHOOK_SIGNING_SECRET=e7c1841e5c323628717481ca1cc5e876",
        "client_secret = '38884b0930f58d22901ee035dd17ed8a'",
    ],
)
def test_a_hex_value_under_a_secrets_name_is_a_secret(text: str) -> None:
    value = text.split("=")[-1].split(": ")[-1].strip(" '\"")
    assert spans(text) == [("high_entropy", value)]


@pytest.mark.parametrize(
    "text",
    [
        "commit_sha = 5b3a9b84dc2381ac5960b926cc9a072b3f3f3f3f",
        "request_id: 5b3a9b84dc2381ac5960b926cc9a072b",
        "token_id=5b3a9b84-dc23-41ac-8960-b926cc9a072b",
        "the build 5b3a9b84dc2381ac5960b926cc9a072b passed",
    ],
)
def test_hex_under_an_ids_name_or_alone_is_not(text: str) -> None:
    assert spans(text) == []


def test_a_connection_string_with_an_empty_user_gives_its_password() -> None:
    text = "CACHE_URL = 'redis://:Ac2FzAF13jifLoFz@redis-cache.prod.svc:6379/0'"
    assert spans(text) == [("connection_string", "Ac2FzAF13jifLoFz")]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("mysql -u root -p'Falcon!1867z' -h 10.0.3.7", "Falcon!1867z"),
        ("psql --password=S3cr3tPa55 -h db", "S3cr3tPa55"),
        ("Password for the VPN config file: qcuv.gbxkz51!", "qcuv.gbxkz51!"),
        ("the password for the till laptop is Maple_3858z, thanks", "Maple_3858z"),
    ],
)
def test_passwords_on_command_lines_and_in_prose(text: str, value: str) -> None:
    assert spans(text) == [("password", value)]


@pytest.mark.parametrize(
    "text",
    [
        "gcc -pthread -o server server.c",
        "the password for the account is changed every month",
        "The password field of the form is: required",
        "password_hash for the user is 5f4dcc3b5aa765d61d8327deb882cf99",
    ],
)
def test_prose_about_passwords_is_not_one(text: str) -> None:
    assert spans(text) == []
