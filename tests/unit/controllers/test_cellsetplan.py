"""The set controller's decisions (`cellsetplan.plan_set`), without etcd."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kukeon.api.cellset import StrategyType
from kukeon.controllers.cellsetplan import Member, SetShape, plan_set

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def shape(
    replicas: int,
    *,
    surge: int = 1,
    unavailable: int = 0,
    min_ready: int = 0,
    strategy: StrategyType = StrategyType.ROLLING_UPDATE,
) -> SetShape:
    return SetShape(replicas, strategy, surge, unavailable, min_ready)


def member(
    name: str,
    hash_: str = "new",
    *,
    age: int = 100,
    ready: bool = True,
    ready_for: int = 60,
    failed: bool = False,
    deleting: bool = False,
    domain: str | None = None,
) -> Member:
    return Member(
        name=name,
        template_hash=hash_,
        created=NOW - timedelta(seconds=age),
        ready=ready,
        ready_since=NOW - timedelta(seconds=ready_for) if ready else None,
        failed=failed,
        deleting=deleting,
        domain=domain,
    )


def test_scale_up_creates_the_missing() -> None:
    plan = plan_set(shape(3), "new", [member("a")], NOW)
    assert (plan.create, plan.delete) == (2, ())
    assert not plan.rolling


def test_scale_down_removes_not_ready_first_then_the_newest() -> None:
    cells = [
        member("old", age=300),
        member("mid", age=200),
        member("young", age=10),
        member("sick", age=400, ready=False),
    ]
    plan = plan_set(shape(2), "new", cells, NOW)
    assert plan.create == 0
    assert plan.delete == ("sick", "young")


def test_scale_down_keeps_the_oldest_cell_of_each_domain() -> None:
    # Placed out of age order (a burst's cells reach the scheduler in any order): the
    # three oldest are on n1 and n2 only, so keeping them would leave n3 empty.
    ages = {"n1": (900, 800, 100), "n2": (700, 300, 200), "n3": (600, 500, 400)}
    cells = [
        member(f"{node}-{age}", age=age, domain=node)
        for node, node_ages in ages.items()
        for age in node_ages
    ]
    plan = plan_set(shape(3), "new", cells, NOW)
    kept = {m.name for m in cells} - set(plan.delete)
    assert kept == {"n1-900", "n2-700", "n3-600"}
    # Newest first among equally full domains, one domain's count at a time.
    assert plan.delete[:3] == ("n1-100", "n2-200", "n3-400")


def test_scale_down_takes_from_the_fullest_domain_first() -> None:
    cells = [member(f"a{i}", age=10 + i, domain="a") for i in range(4)]
    cells.append(member("b0", age=1, domain="b"))
    plan = plan_set(shape(3), "new", cells, NOW)
    assert plan.delete == ("a0", "a1")


def test_scale_down_takes_not_ready_cells_first_whatever_their_domain() -> None:
    cells = [member(f"a{i}", age=10 + i, domain="a") for i in range(3)]
    cells.append(member("b-sick", age=50, ready=False, domain="b"))
    cells.append(member("b0", age=60, domain="b"))
    plan = plan_set(shape(3), "new", cells, NOW)
    assert plan.delete == ("b-sick", "a0")


def test_a_failed_cell_is_replaced() -> None:
    plan = plan_set(shape(2), "new", [member("a"), member("b", ready=False, failed=True)], NOW)
    assert plan.delete == ("b",)
    assert plan.create == 1


def test_cells_being_deleted_are_not_counted_as_replicas() -> None:
    plan = plan_set(shape(2), "new", [member("a"), member("b", deleting=True)], NOW)
    assert (plan.create, plan.delete) == (1, ())
    assert plan.counts.replicas == 1


def test_a_rollout_keeps_within_surge_and_unavailability() -> None:
    old = [member(f"o{i}", "old") for i in range(3)]
    # maxSurge 1, maxUnavailable 0: one new cell, no old one removed yet.
    plan = plan_set(shape(3, surge=1, unavailable=0), "new", old, NOW)
    assert (plan.create, plan.delete) == (1, ())
    assert plan.rolling
    # The new one is not Ready yet: nothing more.
    cells = [*old, member("n0", ready=False, age=1)]
    plan = plan_set(shape(3, surge=1, unavailable=0), "new", cells, NOW)
    assert (plan.create, plan.delete) == (0, ())
    # Ready: one old cell goes (4 available, 3 needed), no new one beyond the surge.
    cells = [*old, member("n0", age=5, ready_for=5)]
    plan = plan_set(shape(3, surge=1, unavailable=0), "new", cells, NOW)
    assert (plan.create, len(plan.delete)) == (0, 1)
    assert plan.delete[0].startswith("o")
    # maxSurge 0, maxUnavailable 1: an old one goes first, a new one comes after.
    plan = plan_set(shape(3, surge=0, unavailable=1), "new", old, NOW)
    assert (plan.create, len(plan.delete)) == (0, 1)
    plan = plan_set(shape(3, surge=0, unavailable=1), "new", old[:2], NOW)
    assert (plan.create, plan.delete) == (1, ())


def test_unavailable_old_cells_go_at_once() -> None:
    cells = [member("o0", "old"), member("o1", "old", ready=False), member("o2", "old")]
    plan = plan_set(shape(3, surge=1, unavailable=0), "new", cells, NOW)
    assert plan.delete == ("o1",)
    assert plan.create == 1


def test_min_ready_seconds_gates_the_removal_of_old_cells() -> None:
    old = [member(f"o{i}", "old") for i in range(2)]
    young = member("n0", age=5, ready_for=5)
    plan = plan_set(shape(2, surge=1, unavailable=0, min_ready=10), "new", [*old, young], NOW)
    assert plan.delete == ()
    assert plan.counts.available == 2
    settled = member("n0", age=15, ready_for=15)
    plan = plan_set(shape(2, surge=1, unavailable=0, min_ready=10), "new", [*old, settled], NOW)
    assert len(plan.delete) == 1


def test_a_rollout_ends_when_every_cell_is_new() -> None:
    cells = [member(f"n{i}") for i in range(3)]
    plan = plan_set(shape(3), "new", cells, NOW)
    assert (plan.create, plan.delete, plan.rolling) == (0, (), False)
    assert plan.counts.updated == plan.counts.ready == plan.counts.available == 3


def test_recreate_removes_the_old_first() -> None:
    old = [member(f"o{i}", "old") for i in range(2)]
    recreate = shape(2, strategy=StrategyType.RECREATE)
    plan = plan_set(recreate, "new", old, NOW)
    assert (plan.create, set(plan.delete)) == (0, {"o0", "o1"})
    leaving = [member(f"o{i}", "old", deleting=True) for i in range(2)]
    plan = plan_set(recreate, "new", leaving, NOW)
    assert plan.create == 0  # the old copies still run
    plan = plan_set(recreate, "new", [], NOW)
    assert plan.create == 2


def test_scaling_down_during_a_rollout_removes_surplus_new_cells() -> None:
    cells = [member("o0", "old"), *(member(f"n{i}", age=i + 1) for i in range(3))]
    plan = plan_set(shape(2, surge=1, unavailable=0), "new", cells, NOW)
    assert "n0" in plan.delete
    assert "o0" in plan.delete
