"""How OIDC claims become VOs, a role and the admin flag (ai4lab.jhub.oidc.access_from_claims), AI4OS-style."""

from __future__ import annotations

from ai4lab.core.settings import OidcSettings
from ai4lab.jhub.oidc import access_from_claims

AI4EOSC = "urn:mace:egi.eu:group:vo.ai4eosc.eu:role=member#aai.egi.eu"
IMAGINE = "urn:mace:egi.eu:group:vo.imagine-ai.eu:role=member#aai.egi.eu"
ADMINS = "urn:mace:egi.eu:group:vo.ai4eosc.eu:platform-admins:role=member#aai.egi.eu"

OIDC = OidcSettings(
    issuer="https://aai.egi.eu/auth/realms/egi",
    allowed_vos=["vo.ai4eosc.eu", "vo.imagine-ai.eu"],
    role_map={AI4EOSC: "intermediate", "*:platform-admins:*": "advanced", "ai4lab-advanced": "advanced"},
    admin_groups=["urn:mace:egi.eu:group:vo.ai4eosc.eu:platform-admins:*"],
)


def test_entitlement_gives_vo_and_mapped_role() -> None:
    a = access_from_claims({"eduperson_entitlement": [AI4EOSC]}, OIDC)
    assert (a.vos, a.vo, a.role, a.admin, a.refusal) == (("vo.ai4eosc.eu",), "vo.ai4eosc.eu", "intermediate", False, "")


def test_unmapped_member_gets_the_default_role() -> None:
    a = access_from_claims({"eduperson_entitlement": IMAGINE}, OIDC)  # one string, as some providers send it
    assert (a.vo, a.role, a.refusal) == ("vo.imagine-ai.eu", "basic", "")


def test_highest_role_wins_and_admin_group_makes_admin() -> None:
    a = access_from_claims({"eduperson_entitlement": [AI4EOSC, ADMINS]}, OIDC)
    assert (a.role, a.admin) == ("advanced", True)


def test_keycloak_groups_claim_maps_roles_too() -> None:
    a = access_from_claims({"eduperson_entitlement": [IMAGINE], "groups": ["ai4lab-advanced"]}, OIDC)
    assert (a.vo, a.role) == ("vo.imagine-ai.eu", "advanced")


def test_outside_every_allowed_vo_is_refused_with_the_reason() -> None:
    a = access_from_claims({"eduperson_entitlement": ["urn:mace:egi.eu:group:vo.other.eu:role=member#aai.egi.eu"]}, OIDC)
    assert "not a member of a VO allowed" in a.refusal
    assert "vo.ai4eosc.eu, vo.imagine-ai.eu" in a.refusal and "yours: vo.other.eu" in a.refusal
    assert "yours: none" in access_from_claims({}, OIDC).refusal


def test_first_allowed_vo_is_recorded_and_no_allowed_list_needs_no_vo() -> None:
    other = "urn:mace:egi.eu:group:vo.other.eu:role=member#aai.egi.eu"
    assert access_from_claims({"eduperson_entitlement": [other, IMAGINE]}, OIDC).vo == "vo.imagine-ai.eu"
    open_platform = OidcSettings(issuer="https://idp.example.org")
    a = access_from_claims({"groups": ["staff"]}, open_platform)
    assert (a.vo, a.role, a.refusal) == (None, "basic", "")


def test_a_vo_pattern_without_a_vo_group_is_refused_at_start() -> None:
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="needs a named group 'vo'"):
        OidcSettings(vo_pattern="^urn:mace:egi.eu:group:([^:#]+)")
    with pytest.raises(ValidationError, match="not a regular expression"):
        OidcSettings(vo_pattern="(?P<vo>")
