"""The model's start order: phases in waves, the same on every target."""

from __future__ import annotations

from stackctl.model import processes, settings
from stackctl.model.process import BARRIERS, Phase, Process, waves
from stackctl.model.secrets import deployed_secrets
from stackctl.model.target import ANSIBLE, COMPOSE, NATIVE


def process(name: str, phase: Phase, one_shot: bool = False) -> Process:
    return Process(name, "g", "system", (name,), phase, one_shot=one_shot)


def test_a_barrier_phase_starts_a_wave_and_the_others_join_the_wave_before_them():
    found = waves([process("prometheus", Phase.ALERTING), process("worker", Phase.WORKERS),
                   process("api", Phase.API), process("init", Phase.INIT, one_shot=True),
                   process("exporter", Phase.MONITORING), process("postgres", Phase.DATA)])
    assert [[p.name for p in wave] for wave in found] == [["postgres", "exporter"], ["init"], ["api", "worker"],
                                                         ["prometheus"]]


def test_every_target_starts_in_four_waves_with_prometheus_last():
    source = settings.load_source()
    for kind in (NATIVE, COMPOSE, ANSIBLE):
        found = waves(processes.of_kind(source, kind, deployed_secrets(source)))
        assert [wave[0].phase for wave in found] == [Phase.DATA, Phase.INIT, Phase.API, Phase.ALERTING], kind
        assert [p.name for p in found[-1]] == ["prometheus"]
        assert {p.name for p in found[1]} <= {"airflow-init", "minio-init"}
    assert Phase.INIT in BARRIERS


def test_every_long_running_process_has_a_probe_and_a_listener_of_each_is_served():
    source = settings.load_source()
    for kind in (NATIVE, COMPOSE, ANSIBLE):
        model = processes.of_kind(source, kind, deployed_secrets(source))
        served = {port for p in model for port in p.listens}
        for p in model:
            assert p.one_shot or p.probe is not None, (kind, p.name)
            assert p.probe is None or not p.probe.port or p.probe.port in p.listens, (kind, p.name)
        assert {s.port for p in model for s in p.scrape} <= served
