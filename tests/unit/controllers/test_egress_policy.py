"""A space's `network.egress` becomes exactly the policy the nftables adapter writes: the
default verdict and every allow rule (CIDR or host, with its ports), in order. Without this
a translation that always said "allow" would pass every test of the adapter."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, IPv4Network, ip_network
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kukeon.api import Space, parse_resource
from kukeon.controllers.space import egress_policy
from kukeon.runtime.network.egress import (
    OTHER_REALM_COMMENT,
    EgressRule,
    EgressRuleset,
    render_apply,
    resolve_policy,
)
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


def _space_chain(spec: Any) -> list[dict[str, Any]]:
    """The rules of the space's chain as nft would receive them, from its spec."""
    policy = egress_policy(spec)
    resolved = asyncio.run(resolve_policy(policy, resolver=_resolver))
    batch = render_apply(
        table="kukeon",
        bridge="kk-r-s",
        realm="r",
        subnet=IPv4Network("10.88.0.0/24"),
        default=policy.default,
        rules=resolved,
    )
    return [
        command["add"]["rule"]
        for command in batch["nftables"]
        if "rule" in command.get("add", {}) and command["add"]["rule"]["chain"] == "egress-kk-r-s"
    ]


async def _resolver(host: str) -> list[IPv4Address]:
    return [IPv4Address("192.0.2.10")]


def test_a_deny_space_ends_its_chain_in_a_drop_after_each_allowed_destination() -> None:
    spec = _space(
        network={
            "egress": {
                "default": "deny",
                "allow": [
                    {"host": "api.example.com", "ports": [443]},
                    {"cidr": "10.1.0.0/16"},
                ],
            }
        }
    ).spec
    rules = _space_chain(spec)
    comments = [rule.get("comment") for rule in rules]
    assert comments == [
        "spoofed",
        "cell-connections",
        None,
        "other-realm-invalid",
        OTHER_REALM_COMMENT,
        "established",
        "rule-0",
        "rule-1",
        "default",
    ]
    host_rule, cidr_rule, default = rules[6:]
    assert host_rule["expr"][0]["match"]["right"] == "192.0.2.10"
    assert host_rule["expr"][1]["match"]["right"] == 443
    assert host_rule["expr"][-1] == {"accept": None}
    assert cidr_rule["expr"][0]["match"]["right"] == {"prefix": {"addr": "10.1.0.0", "len": 16}}
    assert default["expr"][-1] == {"drop": None}


def test_a_space_without_egress_accepts_by_default() -> None:
    rules = _space_chain(_space().spec)
    assert [rule.get("comment") for rule in rules] == [
        "spoofed",
        "cell-connections",
        None,
        "other-realm-invalid",
        "other-realm",
        "established",
        "default",
    ]
    assert rules[-1]["expr"][-1] == {"accept": None}
