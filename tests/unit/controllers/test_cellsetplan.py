"""The set controller's decisions (`cellsetplan.plan_set`), without etcd."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kukeon.api.cellset import StrategyType
from kukeon.controllers.cellsetplan import (
    Member,
    SetShape,
    plan_set,
    ready_age_rank,
    removal_order,
)

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
    restarts: int = 0,
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
        restarts=restarts,
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


def names(members: list[Member]) -> list[str]:
    return [m.name for m in members]


def test_the_most_recently_ready_cell_goes_first() -> None:
    # "old" was created first but got Ready again a minute ago (a restart): as a
    # ReplicaSet, its short time Ready is what counts, not its age.
    cells = [member("old", age=7200, ready_for=60), member("young", age=3600, ready_for=3500)]
    assert names(removal_order(cells, NOW)) == ["old", "young"]


def test_the_most_restarted_cell_goes_first_among_cells_ready_alike() -> None:
    # Ready 40 and 50 minutes ago: the same power of two of nanoseconds, alike for
    # Kubernetes' logarithmic ranking; the restarts decide, then the creation.
    cells = [
        member("steady", age=3100, ready_for=3000),
        member("young", age=2500, ready_for=2400),
        member("flappy", age=3200, ready_for=3000, restarts=4),
    ]
    assert names(removal_order(cells, NOW)) == ["flappy", "young", "steady"]
    assert plan_set(shape(2), "new", cells, NOW).delete == ("flappy",)


def test_not_ready_cells_go_by_domain_then_restarts_then_age() -> None:
    cells = [
        member("a-ready", domain="a"),
        member("a-sick", age=500, ready=False, domain="a"),
        member("b-new", age=5, ready=False, domain="b"),
        member("b-looping", age=400, ready=False, domain="b", restarts=9),
        member("b-old", age=600, ready=False, domain="b"),
    ]
    order = names(removal_order(cells, NOW))
    assert order == ["b-looping", "b-new", "b-old", "a-sick", "a-ready"]


def test_ready_age_ranks_are_powers_of_two_of_nanoseconds() -> None:
    assert ready_age_rank(None, NOW) == -2  # unknown: the first to go
    assert ready_age_rank(NOW, NOW) == ready_age_rank(NOW + timedelta(seconds=1), NOW) == -1
    assert ready_age_rank(NOW - timedelta(microseconds=1), NOW) == 9  # 1000 ns
    forty, fifty = (ready_age_rank(NOW - timedelta(minutes=m), NOW) for m in (40, 50))
    assert forty == fifty == 41
    assert ready_age_rank(NOW - timedelta(minutes=1), NOW) < forty


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
