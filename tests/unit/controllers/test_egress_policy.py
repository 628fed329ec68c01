"""A space's `network.egress` becomes exactly the policy the nftables adapter writes: the
default verdict and every allow rule (CIDR or host, with its ports), in order. Without this
a translation that always said "allow" would pass every test of the adapter."""

from __future__ import annotations

from ipaddress import ip_network
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kukeon.api import Space, parse_resource
from kukeon.controllers.space import egress_policy
from kukeon.runtime.network.egress import EgressRule, EgressRuleset
from tests.unit.api.samples import space_doc


def _space(**spec: Any) -> Space:
    space = parse_resource(space_doc("edge", **spec))
    assert isinstance(space, Space)
    return space


def test_no_egress_section_allows_everything() -> None:
    assert egress_policy(_space().spec) == EgressRuleset(default="allow")
    assert egress_policy(_space(network={}).spec) == EgressRuleset(default="allow")


def test_every_rule_and_the_default_are_carried() -> None:
    spec = _space(
        network={
            "egress": {
                "default": "deny",
                "allow": [
                    {"host": "api.example.com", "ports": [443]},
                    {"cidr": "10.1.2.3/8", "ports": [1, 65535]},
                    {"cidr": "fd00::/64"},
                ],
            }
        }
    ).spec
    assert egress_policy(spec) == EgressRuleset(
        default="deny",
        rules=(
            EgressRule(host="api.example.com", ports=(443,)),
            EgressRule(cidr=ip_network("10.0.0.0/8"), ports=(1, 65535)),
            EgressRule(cidr=ip_network("fd00::/64")),
        ),
    )


def test_default_allow_with_rules_stays_allow() -> None:
    spec = _space(network={"egress": {"default": "allow", "allow": [{"cidr": "1.1.1.1/32"}]}})
    policy = egress_policy(spec.spec)
    assert policy.default == "allow"
    assert policy.rules == (EgressRule(cidr=ip_network("1.1.1.1/32")),)


_rules = st.lists(
    st.one_of(
        st.builds(
            lambda octet, bits, ports: {"cidr": f"10.{octet}.0.0/{bits}", "ports": ports},
            st.integers(0, 255),
            st.integers(8, 32),
            st.lists(st.integers(1, 65535), max_size=3, unique=True),
        ),
        st.builds(
            lambda label, ports: {"host": f"{label}.example.com", "ports": ports},
            st.from_regex(r"[a-z][a-z0-9]{0,10}", fullmatch=True),
            st.lists(st.integers(1, 65535), max_size=3, unique=True),
        ),
    ),
    max_size=6,
)


@given(default=st.sampled_from(["allow", "deny"]), rules=_rules)
def test_the_translation_keeps_each_rule(default: str, rules: list[dict[str, Any]]) -> None:
    spec = _space(network={"egress": {"default": default, "allow": rules}}).spec
    policy = egress_policy(spec)
    assert policy.default == default
    assert len(policy.rules) == len(rules)
    for rule, written in zip(policy.rules, rules, strict=True):
        assert rule.ports == tuple(written["ports"])
        if "cidr" in written:
            assert rule.cidr == ip_network(written["cidr"], strict=False)
            assert rule.host is None
        else:
            assert rule.host == written["host"]
            assert rule.cidr is None
