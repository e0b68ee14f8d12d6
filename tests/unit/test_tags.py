"""Which tagged processes are generations of a program (linux/tags.generations, pure)."""

from __future__ import annotations

from twinvisor.linux.tags import Tagged, generations


def tagged(
    pid: int,
    ticks: int,
    gen: str | None = "g1",
    leader: bool = True,
    parent_tagged: bool = False,
    name: str = "p",
) -> Tagged:
    return Tagged(name, pid, ticks, float(ticks), gen, leader, parent_tagged)


def test_the_oldest_of_a_generation_is_the_program() -> None:
    program = tagged(100, 50)
    daemonized = tagged(180, 70)  # forked twice, called setsid, reparented: same id
    child = tagged(150, 60, leader=False)
    assert generations([daemonized, child, program]) == [program]


def test_a_tie_in_start_ticks_goes_to_the_lower_pid() -> None:
    assert generations([tagged(101, 50), tagged(100, 50)]) == [tagged(100, 50)]


def test_two_generations_of_one_instance_are_both_found() -> None:
    old, new = tagged(100, 50, gen="g1"), tagged(200, 90, gen="g2")
    assert generations([new, old]) == [new, old]


def test_remnants_of_a_dead_program_are_not_a_generation() -> None:
    # the program is gone: what is left of its generation no longer leads a session
    assert generations([tagged(150, 60, leader=False)]) == []


def test_without_a_generation_id_a_session_leader_with_an_untagged_parent() -> None:
    legacy = tagged(100, 50, gen=None)
    descendant = tagged(120, 55, gen=None, parent_tagged=True)
    assert generations([legacy, descendant, tagged(130, 56, gen=None, leader=False)]) == [legacy]
