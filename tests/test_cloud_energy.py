"""The cloud's side of a query's energy (``energy.cloud``): estimated from tokens with its source, the parts add up,
the online policy's reward counts it unless ``energy_scope="device"``."""

from __future__ import annotations

import pytest

from edgeroute import ConfigError, Router, RouterConfig
from edgeroute.energy.base import EnergyReading, QueryEnergy
from edgeroute.energy.cloud import CLOUD_ENERGY_TABLE, cloud_rate, guess_class
from edgeroute.policy.threshold import ThresholdPolicy
from edgeroute.testing import MockCloud, MockLocalModel


def test_the_parts_add_up_on_each_side_and_the_cloud_part_is_labelled_estimated():
    cloud = cloud_rate("gpt-4o").estimate(prompt_tokens=100, completion_tokens=50)
    assert cloud.joules == pytest.approx(100 * 0.2 + 50 * 2.0) and cloud.kind == "estimated"
    assert cloud.scope == "datacenter" and cloud.source.startswith("cloud energy table: frontier (Epoch AI 2025")
    assert "range x0.25-x3" in cloud.attribution
    energy = QueryEnergy(local=EnergyReading(3.0, "counter", "rapl"), cloud_wait=EnergyReading(0.2, "estimated", "cpu"),
                         cloud=cloud)
    assert energy.joules == pytest.approx(3.2) and energy.joules_in("device") == pytest.approx(3.2)
    assert energy.joules_in("both") == pytest.approx(3.2 + 120.0)
    sides = energy.to_dict()["sides"]
    assert sides["device"] == {"joules": pytest.approx(3.2), "kind": "estimated"}
    assert sides["cloud"]["kind"] == "estimated" and sides["both_joules"] == pytest.approx(123.2)
    local_only = QueryEnergy(local=EnergyReading(3.0, "counter", "rapl"))
    assert local_only.joules_in("both") == 3.0 and local_only.to_dict()["sides"]["cloud"] is None


def test_the_class_is_guessed_from_the_name_and_config_replaces_the_rates():
    assert [guess_class(n) for n in ("gpt-4o", "gpt-4o-mini", "gpt-4.1-nano", "llama-3.1-70b", None)] == \
        ["frontier", "medium", "small", "medium", "frontier"]
    assert cloud_rate("gpt-4o", "small") is CLOUD_ENERGY_TABLE["small"]
    mine = cloud_rate("gpt-4o", j_per_output_token=1.0)
    assert mine.j_per_output_token == 1.0 and mine.j_per_input_token == 0.2 and "config" in mine.source
    assert mine.estimate(0, 10).kind == "estimated"
    with pytest.raises(ConfigError, match="cloud_energy_class"):
        RouterConfig(cloud_energy_class="huge")
    with pytest.raises(ConfigError, match="energy_scope"):
        RouterConfig(energy_scope="planet")


class Recording(ThresholdPolicy):
    def __init__(self) -> None:
        super().__init__(0.99)
        self.outcomes = []

    def settle(self, answer_id, outcome):
        self.outcomes.append(outcome)


@pytest.mark.parametrize("scope", ["both", "device"])
def test_an_escalated_answer_carries_the_cloud_estimate_and_the_reward_counts_it_by_scope(scope):
    policy = Recording()
    cloud = MockCloud(model="gpt-4o-mini")
    with Router(local_model=MockLocalModel(), cloud=cloud, policy=policy, trace=False, energy_scope=scope) as router:
        answer = router.ask("What is 2 + 2?")
    assert answer.route == "cloud" and answer.energy.cloud is not None
    assert answer.energy.cloud.kind == "estimated" and "medium" in answer.energy.cloud.source
    tokens = answer.tokens
    expected = 0.5 * tokens["cloud_completion"] + 0.05 * tokens["cloud_prompt"]
    assert answer.energy.cloud.joules == pytest.approx(expected) and expected > 0
    device = answer.energy.joules or 0.0
    assert policy.outcomes[0].joules == pytest.approx(device + expected if scope == "both" else device)
    assert answer.to_dict()["energy"]["sides"]["cloud"]["joules"] == pytest.approx(expected)


def test_a_local_answer_has_no_cloud_side():
    with Router(local_model=MockLocalModel(), local_only=True, trace=False) as router:
        answer = router.ask("What is 2 + 2?")
    assert answer.energy.cloud is None and answer.energy.joules_in("both") == answer.energy.joules


@pytest.mark.slow
def test_a_real_openai_compatible_server_answer_gets_its_cloud_energy_from_the_usage_it_reports(real_model,
                                                                                                   llama_server):
    with Router(local_model=real_model, cloud_url=llama_server.base_url, cloud_model="stand-in-cloud",
                threshold=1.0, trace=False, max_tokens=8) as router:
        answer = router.ask("Name a colour.")
    assert answer.route == "cloud" and answer.tokens["cloud_completion"] > 0
    rate = CLOUD_ENERGY_TABLE["frontier"]  # "stand-in-cloud" names no class: the conservative row
    counted = -(-len("Name a colour.") // 4)  # a stream reports no usage: its input is approximated
    assert answer.energy.cloud.joules == pytest.approx(rate.j_per_output_token * answer.tokens["cloud_completion"]
                                                       + rate.j_per_input_token * counted)
    assert "approximated as characters / 4" in answer.energy.cloud.attribution
    assert answer.energy.joules_in("both") > answer.energy.joules
