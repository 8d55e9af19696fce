"""The mutation catalogue: small, realistic bugs in a default render's app, each breaking a
promise of the rendered README, which the render's own suite must catch.

Each `Mutation` names the promise it breaks by a phrase of the README (for the Security
table, of the guarantee's cell), the file, the exact text it replaces and the
replacement, and the render's test modules that guard the promise (run first).
tests/matrix/test_mutations.py applies each one to a default render, runs the suite, and
fails if the suite still passes, if the old text is gone (the mutation no longer
applies), or if a guarantee of the README's table names no mutation.

To add one: append a `Mutation` under its promise (add the promise first, with the
phrase of its README line, when it is new).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutation:
    name: str
    promise: str  # a phrase of the README: which promise this bug breaks
    path: str  # in the render
    old: str  # found exactly once in `path`
    new: str
    tests: tuple[str, ...]  # the promise's own test modules: run first, then the rest
    command: tuple[str, ...] = ()  # a check of the render's own, instead of its test suite

    def apply_to(self, source: str) -> str:
        """`source` with the bug in; AssertionError when `old` is not there exactly once."""
        found = source.count(self.old)
        assert found == 1, (
            f"mutation {self.name!r} no longer applies: its old text is found {found} times "
            f"in {self.path} (expected once); update it in tests/support/mutations.py:\n"
            f"{self.old}"
        )
        return source.replace(self.old, self.new)


# The promises, as phrases of the rendered README (defaults' answers).
SETTINGS_REFUSED = "In production it refuses to start with a missing, placeholder or short secret"
PASSWORDS = "Passwords are stored as Argon2id hashes"
ERRORS_REDACTED = "A 500 puts no e-mail, password hash or other value of a refused row"
OWN_RECORDS = "cannot set `is_superuser`, `is_active` or `is_verified`"
ACCESS_TOKENS = "Access tokens expire after `ACCESS_TOKEN_EXPIRE_SECONDS`"
LOGINS = "Refresh tokens rotate, a reused one ends its login"
ALIKE = "Login and forgot-password answer a registered and an unknown e-mail alike"
LOGIN_LIMIT = "Failed logins are limited"
HEADERS = "Security headers on every response, a 500 included, HSTS in production"
DOCS = "In production `/docs` and `/redoc` are off unless `API_DOCS_ENABLED=true`"
CORS = "Browsers get a CORS grant for the origins of `CORS_ORIGINS` only"
RUFF = "ruff's security rules"
READINESS = "readiness (database and migrations)"
# Promises of AGENTS.md that the template's gates (tests/matrix/test_gates.py) rely on.
MIGRATIONS_CHECKED = "fails when the models and migrations disagree"
STRICT_TYPING = "`uv run mypy` is strict and must stay clean"

CONFIG = "app/core/config.py"
MAIN = "app/main.py"
MIDDLEWARE = "app/api/middleware.py"
ACCESS = "app/core/access_tokens.py"
LOGINS_PY = "app/core/logins.py"
MANAGER = "app/core/user_manager.py"
LIMIT = "app/api/login_limit.py"
SCHEMAS = "app/schemas/user.py"
BODY_SIZE_LIMIT = (
    "    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.MAX_REQUEST_BODY_BYTES)"
)
SECURITY_HEADERS = (
    '    app.add_middleware(SecurityHeadersMiddleware, hsts=settings.ENVIRONMENT == "production")'
)
# A line that writes `secret` to the log, as a debugging session might leave behind.
LOG = "__import__('logging').getLogger(__name__).debug('%s', {})"

CATALOGUE: tuple[Mutation, ...] = (
    # Production settings
    Mutation(
        "placeholder secrets accepted",
        SETTINGS_REFUSED,
        CONFIG,
        "if any(marker in value.lower() for marker in PLACEHOLDER_MARKERS):",
        "if any(marker in value for marker in PLACEHOLDER_MARKERS[1:]):",
        ("tests/test_config.py",),
    ),
    Mutation(
        "short secrets accepted",
        SETTINGS_REFUSED,
        CONFIG,
        "if len(value.encode()) < MIN_SECRET_BYTES:",
        "if len(value.encode()) < MIN_SECRET_BYTES // 2:",
        ("tests/test_config.py",),
    ),
    Mutation(
        "wildcard CORS origin accepted",
        SETTINGS_REFUSED,
        CONFIG,
        'if "*" in self.CORS_ORIGINS:',
        'if ["*"] == self.CORS_ORIGINS[1:]:',
        ("tests/test_config.py",),
    ),
    Mutation(
        "long access tokens accepted in production",
        SETTINGS_REFUSED,
        CONFIG,
        "if self.ACCESS_TOKEN_EXPIRE_SECONDS > MAX_PRODUCTION_ACCESS_SECONDS:",
        "if self.ACCESS_TOKEN_EXPIRE_SECONDS > 24 * MAX_PRODUCTION_ACCESS_SECONDS:",
        ("tests/test_config.py",),
    ),
    Mutation(
        "no DATABASE_URL accepted in production",
        SETTINGS_REFUSED,
        CONFIG,
        "if self.DATABASE_URL is None:",
        'if self.DATABASE_URL is None and self.ENVIRONMENT != "production":',
        ("tests/test_config.py",),
    ),
    Mutation(
        "production mails localhost when MAIL_SERVER is unset",
        SETTINGS_REFUSED,
        CONFIG,
        "        if not self.MAIL_SERVER:\n",
        '        if self.MAIL_SERVER == "":\n',
        ("tests/test_config.py",),
    ),
    # Passwords
    Mutation(
        "the password stored as typed",
        PASSWORDS,
        "app/core/security.py",
        "hashed = await _in_hashing_thread(super().hash, password)",
        "hashed = password",
        ("tests/test_auth.py", "tests/test_passwords.py"),
    ),
    Mutation(
        "422 echoes the request",
        PASSWORDS,
        "app/api/errors.py",
        '{key: value for key, value in error.items() if key != "input"}',
        "dict(error.items())",
        ("tests/test_passwords.py", "tests/test_bad_input.py"),
    ),
    Mutation(
        "the login form logged at DEBUG",
        PASSWORDS,
        MANAGER,
        "            user = await self.get_by_email(credentials.username)\n",
        f"            {LOG.format('credentials.password')}\n"
        "            user = await self.get_by_email(credentials.username)\n",
        ("tests/test_passwords.py", "tests/test_logging.py"),
    ),
    # Database errors redacted
    Mutation(
        "the engine shows a statement's values in its errors",
        ERRORS_REDACTED,
        "app/db/session.py",
        "hide_parameters=True,",
        "hide_parameters=False,",
        ("tests/test_error_reports.py",),
    ),
    Mutation(
        "a database error described with its parameters",
        ERRORS_REDACTED,
        "app/core/redaction.py",
        'return f"{cause}\\n[SQL: {exc.statement}]" if exc.statement else cause',
        'return f"{cause}\\n[SQL: {exc.statement}]\\n[parameters: {exc.params}]"',
        ("tests/test_error_reports.py",),
    ),
    # Own records only
    Mutation(
        "an owner check dropped",
        OWN_RECORDS,
        "app/api/routes/posts.py",
        "    if not user.is_superuser:\n        query = query.where(Post.author_id == user.id)",
        "    if user.is_superuser:\n        query = query.where(Post.author_id == user.id)",
        ("tests/test_posts.py",),
    ),
    Mutation(
        "PATCH /users/me may set the flags",
        OWN_RECORDS,
        SCHEMAS,
        '''    """PATCH body: every field optional; the is_* flags count only for superusers."""
''',
        '''    """PATCH body: every field optional; the is_* flags count only for superusers."""

    def create_update_dict(self):  # type: ignore[no-untyped-def]
        return self.create_update_dict_superuser()
''',
        ("tests/test_users.py", "tests/test_auth.py"),
    ),
    Mutation(
        "registration may set the flags",
        OWN_RECORDS,
        SCHEMAS,
        '''    code such as `commands.create_superuser` can set them.
    """
''',
        '''    code such as `commands.create_superuser` can set them.
    """

    def create_update_dict(self):  # type: ignore[no-untyped-def]
        return self.create_update_dict_superuser()
''',
        ("tests/test_auth.py", "tests/test_users.py"),
    ),
    Mutation(
        "superuser routes open to any user",
        OWN_RECORDS,
        "app/core/users.py",
        "    if not user.is_superuser:\n        raise HTTPException(status.HTTP_403_FORBIDDEN)",
        "    if user.is_superuser is None:\n        raise HTTPException(status.HTTP_403_FORBIDDEN)",
        ("tests/test_users.py",),
    ),
    # Access tokens
    Mutation(
        "expiry of a remembered token not compared",
        ACCESS_TOKENS,
        ACCESS,
        'if claims is None or "sub" not in claims or claims.get("exp", 0) <= time.time():',
        'if claims is None or "sub" not in claims:',
        ("tests/test_auth.py",),
    ),
    Mutation(
        "audience not verified",
        ACCESS_TOKENS,
        ACCESS,
        "return decode_jwt(token, key, list(audience), [algorithm])",
        'return jwt.decode(token, key, algorithms=[algorithm], options={"verify_aud": False})',
        ("tests/test_auth.py",),
    ),
    Mutation(
        "tokens live a day",
        ACCESS_TOKENS,
        ACCESS,
        "expires = time.time() + settings.ACCESS_TOKEN_EXPIRE_SECONDS",
        "expires = time.time() + 86400",
        ("tests/test_auth.py",),
    ),
    Mutation(
        "inactive users keep their access",
        ACCESS_TOKENS,
        "app/core/users.py",
        "if user is None or not user.is_active:",
        "if user is None:",
        ("tests/test_auth.py", "tests/test_users.py", "tests/test_logins.py"),
    ),
    # Logins
    Mutation(
        "a reused refresh token does not end its login",
        LOGINS,
        LOGINS_PY,
        "        await _revoke(session, RefreshToken.login_id.in_(reused.scalar_subquery()), now)\n"
        "        return None",
        "        return None",
        ("tests/test_logins.py",),
    ),
    Mutation(
        "a refresh token works twice",
        LOGINS,
        LOGINS_PY,
        "            RefreshToken.used_at.is_(None),\n"
        "            RefreshToken.revoked_at.is_(None),\n"
        "            RefreshToken.expires_at > now,\n        )\n        .values(used_at=now)",
        "            RefreshToken.revoked_at.is_(None),\n"
        "            RefreshToken.expires_at > now,\n        )\n        .values(used_at=now)",
        ("tests/test_logins.py",),
    ),
    Mutation(
        "expired refresh tokens work",
        LOGINS,
        LOGINS_PY,
        "            RefreshToken.revoked_at.is_(None),\n"
        "            RefreshToken.expires_at > now,\n        )\n        .values(used_at=now)",
        "            RefreshToken.revoked_at.is_(None),\n        )\n        .values(used_at=now)",
        ("tests/test_logins.py",),
    ),
    Mutation(
        "a password change ends no login",
        LOGINS,
        MANAGER,
        'if "password" in update_dict or update_dict.get("is_active") is False:',
        'if update_dict.get("is_active") is False:',
        ("tests/test_logins.py",),
    ),
    Mutation(
        "a password reset ends no login",
        LOGINS,
        MANAGER,
        "request: Request | None = None) -> None:\n        await self.end_all_logins(user)",
        "request: Request | None = None) -> None:\n        pass",
        ("tests/test_logins.py",),
    ),
    Mutation(
        "ending all logins leaves access tokens working",
        LOGINS,
        LOGINS_PY,
        ".values(login_generation=User.login_generation + 1)",
        ".values(login_generation=User.login_generation)",
        ("tests/test_logins.py",),
    ),
    Mutation(
        "a refresh token written to the log at login",
        LOGINS,
        LOGINS_PY,
        "    return Tokens(access_token, login.token)\n\n\nasync def refresh(",
        f"    {LOG.format('login.token')}\n"
        "    return Tokens(access_token, login.token)\n\n\nasync def refresh(",
        ("tests/test_logging.py",),
    ),
    # Alike for registered and unknown addresses
    Mutation(
        "an unknown e-mail costs no Argon2 work",
        ALIKE,
        MANAGER,
        "            await self.password_helper.hash_async(credentials.password)\n"
        "            return None",
        "            return None",
        ("tests/test_auth.py",),
    ),
    Mutation(
        "login tells an unknown e-mail apart",
        ALIKE,
        MANAGER,
        "        except exceptions.UserNotExists:\n            user = None",
        "        except exceptions.UserNotExists:\n"
        "            raise exceptions.InvalidPasswordException('unknown e-mail') from None",
        ("tests/test_auth.py",),
    ),
    # Failed logins limited
    Mutation(
        "failures never recorded",
        LOGIN_LIMIT,
        LIMIT,
        "            await self._limiter.hit(self.limits[name], name, identifier)",
        "            pass",
        ("tests/test_login_limit.py",),
    ),
    Mutation(
        "the e-mail counted as typed",
        LOGIN_LIMIT,
        LIMIT,
        'return hmac.digest(EMAIL_KEY, email.lower().encode(), "sha256").hex()',
        'return hmac.digest(EMAIL_KEY, email.encode(), "sha256").hex()',
        ("tests/test_login_limit.py",),
    ),
    Mutation(
        "attempts in progress not counted",
        LOGIN_LIMIT,
        LIMIT,
        "if not await self._limiter.test(item, name, identifier, cost=in_flight):",
        "if not await self._limiter.test(item, name, identifier):",
        ("tests/test_login_limit.py",),
    ),
    Mutation(
        "the limit fails open when the store is down",
        LOGIN_LIMIT,
        LIMIT,
        "    except StorageError as exc:\n        raise store_unavailable(exc) from exc",
        "    except StorageError:\n        pass",
        ("tests/test_login_limit.py",),
    ),
    # Security headers
    Mutation(
        "HSTS never on",
        HEADERS,
        MAIN,
        'hsts=settings.ENVIRONMENT == "production"',
        "hsts=False",
        ("tests/test_middleware.py",),
    ),
    Mutation(
        "HSTS compared with a misspelt environment",
        HEADERS,
        MAIN,
        'hsts=settings.ENVIRONMENT == "production"',
        'hsts=settings.ENVIRONMENT == "Production"',
        ("tests/test_middleware.py",),
    ),
    Mutation(
        "Cross-Origin-Opener-Policy dropped",
        HEADERS,
        MIDDLEWARE,
        '    "Cross-Origin-Opener-Policy": "same-origin",\n',
        "",
        ("tests/test_middleware.py",),
    ),
    Mutation(
        "body size and security headers swapped",
        HEADERS,
        MAIN,
        f"{BODY_SIZE_LIMIT}\n{SECURITY_HEADERS}\n",
        f"{SECURITY_HEADERS}\n{BODY_SIZE_LIMIT}\n",
        ("tests/test_middleware.py",),
    ),
    Mutation(
        "streamed bodies not counted",
        HEADERS,
        MIDDLEWARE,
        "            if received > self.max_bytes:",
        "            if received > self.max_bytes and declared is not None:",
        ("tests/test_middleware.py",),
    ),
    Mutation(
        "HSTS in every environment",
        HEADERS,
        MAIN,
        'hsts=settings.ENVIRONMENT == "production"',
        "hsts=True",
        ("tests/test_middleware.py",),
    ),
    Mutation(
        "a 500 without the security headers",
        HEADERS,
        "app/api/request_log.py",
        """    add_security_headers(
        response.headers, request.scope["path"], hsts=settings.ENVIRONMENT == "production"
    )
""",
        "",
        ("tests/test_middleware.py",),
    ),
    # API docs
    Mutation(
        "docs served in production",
        DOCS,
        CONFIG,
        '            return self.API_DOCS_ENABLED\n        return self.ENVIRONMENT != "production"',
        "            return self.API_DOCS_ENABLED\n        return True",
        ("tests/test_docs.py",),
    ),
    Mutation(
        "docs load their scripts from a CDN",
        DOCS,
        MAIN,
        "        return FastAPIOffline(**options)",
        "        return FastAPI(**options)",
        ("tests/test_docs.py",),
    ),
    # CORS
    Mutation(
        "any origin when CORS_ORIGINS is empty",
        CORS,
        MAIN,
        "    if settings.CORS_ORIGINS:\n        app.add_middleware(\n            CORSMiddleware,\n"
        "            allow_origins=settings.CORS_ORIGINS,",
        "    if True:\n        app.add_middleware(\n            CORSMiddleware,\n"
        '            allow_origins=settings.CORS_ORIGINS or ["*"],',
        ("tests/test_cors.py",),
    ),
    Mutation(
        "any origin once CORS_ORIGINS is set",
        CORS,
        MAIN,
        "            allow_origins=settings.CORS_ORIGINS,",
        '            allow_origins=["*"],',
        ("tests/test_cors.py",),
    ),
    # ruff's security rules
    Mutation(
        "MD5 for the refresh tokens' hashes",
        RUFF,
        LOGINS_PY,
        "return hashlib.sha256(token.encode()).digest()",
        "return hashlib.md5(token.encode()).digest()",
        (),
        command=("ruff", "check", "."),
    ),
    # The template's gates: a render that breaks them must fail them
    Mutation(
        "a column added to a model without its migration",
        MIGRATIONS_CHECKED,
        "app/db/models/user.py",
        "    id: Mapped[int] = mapped_column(primary_key=True)\n",
        "    id: Mapped[int] = mapped_column(primary_key=True)\n"
        "    nickname: Mapped[str | None] = mapped_column(default=None)\n",
        (),
        command=("alembic", "check"),
    ),
    Mutation(
        "HSTS compared with a misspelt environment, seen by mypy",
        STRICT_TYPING,
        MAIN,
        'hsts=settings.ENVIRONMENT == "production"',
        'hsts=settings.ENVIRONMENT == "prod"',
        (),
        command=("mypy",),
    ),
    # Readiness
    Mutation(
        "ready at an older revision",
        READINESS,
        "app/api/routes/health.py",
        "if revision is None or revision in older:",
        "if revision is None:",
        ("tests/test_health.py",),
    ),
)
