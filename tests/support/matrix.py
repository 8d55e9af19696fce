"""The answer sets the template's tests render: a pairwise covering array.

Every value of every question appears at least once, and every pair of values
across the authentication and resource questions appears together at least
once (`tests/matrix/test_matrix.py` proves both), in 8 renders instead of the 64 of
the full product. The first set is the defaults.

Construction: the four yes/no-like questions take the bit patterns 0000,
0011, 0101 and 0110 and their complements, one pattern and its complement
per OAuth choice; any two of those columns then show all four value pairs.
"""

from typing import Any

Answers = dict[str, Any]

# Questions whose pairs must all appear together.
PAIRWISE = (
    "user_id_type",
    "auth_strategy",
    "auth_transport",
    "oauth_providers",
    "example_resource",
)

COMBINATIONS: dict[str, Answers] = {
    "defaults": {
        "user_id_type": "int",
        "auth_strategy": "jwt",
        "auth_transport": "bearer",
        "oauth_providers": [],
        "example_resource": True,
        "python_version": "3.13",
        "email_backend": "smtp",
        "docker": True,
        "deploy": "none",
        "ci": "github",
        "pre_commit": True,
    },
    "uuid-database-cookie-bare": {
        "user_id_type": "uuid",
        "auth_strategy": "database",
        "auth_transport": "cookie",
        "cookie_samesite": "strict",
        "oauth_providers": [],
        "example_resource": False,
        "python_version": "3.13",
        "email_backend": "console",
        "docker": False,
        "deploy": "none",
        "ci": "none",
        "pre_commit": False,
    },
    "google-jwt-cookie-bare": {
        "user_id_type": "int",
        "auth_strategy": "jwt",
        "auth_transport": "cookie",
        "cookie_samesite": "lax",
        "oauth_providers": ["google"],
        "example_resource": False,
        "python_version": "3.12",
        "email_backend": "console",
        "docker": True,
        "deploy": "kubernetes",
        "ci": "github",
        "pre_commit": False,
    },
    "google-uuid-database-bearer": {
        "user_id_type": "uuid",
        "auth_strategy": "database",
        "auth_transport": "bearer",
        "oauth_providers": ["google"],
        "example_resource": True,
        "python_version": "3.13",
        "email_backend": "smtp",
        "docker": False,
        "deploy": "none",
        "ci": "none",
        "pre_commit": True,
    },
    "github-database-bearer-bare": {
        "user_id_type": "int",
        "auth_strategy": "database",
        "auth_transport": "bearer",
        "oauth_providers": ["github"],
        "example_resource": False,
        "python_version": "3.13",
        "email_backend": "smtp",
        "docker": True,
        "deploy": "kubernetes",
        "ci": "none",
        "pre_commit": True,
    },
    "github-uuid-jwt-cookie": {
        "user_id_type": "uuid",
        "auth_strategy": "jwt",
        "auth_transport": "cookie",
        "cookie_samesite": "strict",
        "oauth_providers": ["github"],
        "example_resource": True,
        "python_version": "3.12",
        "email_backend": "console",
        "docker": False,
        "deploy": "none",
        "ci": "github",
        "pre_commit": False,
    },
    "both-database-cookie": {
        "user_id_type": "int",
        "auth_strategy": "database",
        "auth_transport": "cookie",
        "cookie_samesite": "lax",
        "oauth_providers": ["google", "github"],
        "example_resource": True,
        "python_version": "3.12",
        "email_backend": "console",
        "docker": True,
        "deploy": "none",
        "ci": "github",
        "pre_commit": True,
    },
    "both-uuid-jwt-bearer-bare": {
        "user_id_type": "uuid",
        "auth_strategy": "jwt",
        "auth_transport": "bearer",
        "oauth_providers": ["google", "github"],
        "example_resource": False,
        "python_version": "3.12",
        "email_backend": "smtp",
        "docker": False,
        "deploy": "none",
        "ci": "github",
        "pre_commit": False,
    },
}


def answers_for(combination: str) -> Answers:
    return {"project_name": f"Matrix {combination}", **COMBINATIONS[combination]}
