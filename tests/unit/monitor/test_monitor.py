"""The generated alert rules under promtool (check and unit tests with synthetic series), the
Grafana dashboard against its schema, and TorchServe's metrics_config against the catalogue."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from handlers.metrics import METRICS
from scripts.monitor.dashboard import dashboard
from scripts.monitor.prometheus import scrape_config, write_files
from scripts.monitor.rules import alert_rules
from scripts.runtimes.torchserve.metrics_config import metrics_config
from scripts.spec import load_spec
from scripts.tasks import task_of
from tests.conftest import REPO

pytestmark = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool missing: `make install` installs it"
)
MODELS = load_spec(REPO / "models.yaml").models
DIGITS = next(m for m in MODELS if m.name == "digits_cnn")


def annotations(name: str, job: str) -> dict:
    rules = alert_rules([DIGITS], [job])["groups"][1]["rules"]
    return next(r for r in rules if r["alert"] == name)["annotations"]


def expected(name: str, job: str = "torchserve", **labels) -> dict:
    severity = next(
        r for g in alert_rules([DIGITS], [job])["groups"] for r in g["rules"] if r["alert"] == name
    )["labels"]["severity"]
    return {
        "alertname": name,
        "exp_alerts": [
            {
                "exp_labels": {"severity": severity, "job": job, "model": "digits_cnn", **labels},
                "exp_annotations": annotations(name, job),
            }
        ],
    }


def series(metric: str, values: str, job: str = "torchserve", **labels) -> dict:
    named = {"job": job, "model": "digits_cnn", "version": "1", **labels}
    return {
        "series": metric + "{" + ",".join(f'{k}="{v}"' for k, v in named.items()) + "}",
        "values": values,
    }


def test_the_rules_fire_on_what_they_watch_and_stay_quiet_otherwise(tmp_path):
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(alert_rules([DIGITS], ["torchserve", "triton"])))
    subprocess.run(["promtool", "check", "rules", str(rules)], check=True, capture_output=True)
    healthy = [
        series("torchship_model_loads_total", "2x20"),
        series("torchship_model_loads_total", "1x20", job="triton"),
        series("torchship_requests_total", "0+10x20", format="json"),
        series("torchship_requests_total", "0+10x20", job="triton", format="tensors"),
    ]
    busy = [
        series("torchship_model_loads_total", "1 1 1 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2"),
        series("torchship_requests_total", "0+10x20", format="json"),
        series("torchship_failed_total", "0+1x20", stage="model"),
        series("torchship_rejected_total", "0+600x20", reason="shape"),
        *[
            series("torchship_stage_seconds_bucket", values, stage="model", le=le)
            for le, values in (("1", "0x20"), ("2.5", "0+10x20"), ("+Inf", "0+10x20"))
        ],
        {"series": 'up{job="triton", instance="127.0.0.1:8002"}', "values": "0x20"},
    ]
    down = {
        "alertname": "ServerDown",
        "exp_alerts": [
            {
                "exp_labels": {
                    "severity": "critical",
                    "job": "triton",
                    "instance": "127.0.0.1:8002",
                },
                "exp_annotations": {"summary": "triton does not answer on 127.0.0.1:8002"},
            }
        ],
    }
    tests = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {  # loaded on both, serving without errors: nothing fires
                "interval": "1m",
                "input_series": healthy,
                "alert_rule_test": [
                    {"eval_time": "15m", "alertname": name, "exp_alerts": []}
                    for name in ("ModelNotLoaded", "ModelRestarted", "ModelErrors", "ModelSlow")
                ],
            },
            {
                "interval": "1m",
                "input_series": busy,
                "alert_rule_test": [
                    {**expected("ModelRestarted", version="1"), "eval_time": "5m"},
                    {"eval_time": "15m", "alertname": "ModelRestarted", "exp_alerts": []},
                    {**expected("ModelNotLoaded", job="triton"), "eval_time": "5m"},
                    {**expected("ModelErrors", version="1"), "eval_time": "10m"},
                    {**expected("ModelRejectsSpike", version="1"), "eval_time": "10m"},
                    {**expected("ModelSlow", version="1"), "eval_time": "12m"},
                    {**down, "eval_time": "5m"},
                ],
            },
        ],
    }
    test_file = tmp_path / "rules_test.yml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False))
    done = subprocess.run(
        ["promtool", "test", "rules", str(test_file)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_configuration_and_rules_for_every_model_pass_promtool(tmp_path):
    targets = {"torchserve": "127.0.0.1:8082", "triton": "127.0.0.1:8002"}
    config, rules, board = write_files(tmp_path, targets, MODELS, "torchship models.yaml")
    assert yaml.safe_load(config.read_text()) == scrape_config(targets, rules)
    groups = yaml.safe_load(rules.read_text())["groups"]
    assert [g["name"] for g in groups] == ["servers", *[m.name for m in MODELS]]
    assert json.loads(board.read_text())["title"] == "torchship models.yaml"


def test_the_dashboard_has_one_row_per_model_with_its_four_panels():
    board = dashboard("torchship", MODELS)
    rows = [p for p in board["panels"] if p["type"] == "row"]
    assert [r["title"] for r in rows] == [m.name for m in MODELS]
    graphs = [p for p in board["panels"] if p["type"] == "timeseries"]
    generation = [m for m in MODELS if task_of(m).streams_tokens]
    # + TTFT/ITL, tokens/s, requests running/waiting, KV cache held
    assert len(graphs) == 4 * len(MODELS) + 4 * len(generation)
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    queries = " ".join(t["expr"] for p in graphs for t in p["targets"])
    for name in (
        "requests_total",
        "stage_seconds_bucket",
        "rejected_total",
        "batch_rows_total",
        "time_to_first_token_seconds_bucket",
        "inter_token_latency_seconds_bucket",
        "generation_tokens_total",
        "num_requests_running",
        "num_requests_waiting",
        "kv_cache_usage_perc",
    ):
        assert f"torchship_{name}" in queries


def test_torchserve_is_told_every_metric_of_the_catalogue_beside_its_own():
    config = metrics_config()
    declared = {
        m["name"]: (kind, m["dimensions"])
        for kind, metrics in config["model_metrics"].items()
        for m in metrics
    }
    for metric in METRICS:
        assert declared[metric.name] == (metric.kind, list(metric.label_names))
    assert declared["torchship_num_requests_waiting"][0] == "gauge"
    assert "HandlerTime" in declared and "ts_inference_requests_total" in str(config["ts_metrics"])


def test_a_generation_model_alerts_on_its_time_to_first_token(tmp_path):
    """GenerationSlowFirstToken fires when the p99 TTFT passes ttft_p99_ms, not before."""
    gpt = next(m for m in MODELS if task_of(m).streams_tokens)
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(alert_rules([gpt], ["torchserve"])))
    rule = next(
        r
        for r in alert_rules([gpt], ["torchserve"])["groups"][1]["rules"]
        if r["alert"] == "GenerationSlowFirstToken"
    )
    assert "GenerationSlowFirstToken" not in str(alert_rules([DIGITS], ["torchserve"]))

    def ttft(fast: str, slow: str) -> list[dict]:
        labels = {"job": "torchserve", "model": gpt.name, "version": "1"}
        name = "torchship_time_to_first_token_seconds_bucket"
        return [
            {
                "series": name
                + "{"
                + ",".join(f'{k}="{v}"' for k, v in {**labels, "le": le}.items())
                + "}",
                "values": values,
            }
            for le, values in (("1", fast), ("5", slow), ("+Inf", slow))
        ]

    exp = {
        "exp_labels": {
            "severity": "warning",
            "job": "torchserve",
            "model": gpt.name,
            "version": "1",
        },
        "exp_annotations": rule["annotations"],
    }
    tests = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {  # every first token within a second: quiet
                "interval": "1m",
                "input_series": ttft("0+10x20", "0+10x20"),
                "alert_rule_test": [
                    {"eval_time": "15m", "alertname": "GenerationSlowFirstToken", "exp_alerts": []}
                ],
            },
            {  # half of them between 1 s and 5 s: p99 above 2 s
                "interval": "1m",
                "input_series": ttft("0+5x20", "0+10x20"),
                "alert_rule_test": [
                    {
                        "eval_time": "15m",
                        "alertname": "GenerationSlowFirstToken",
                        "exp_alerts": [exp],
                    }
                ],
            },
        ],
    }
    test_file = tmp_path / "rules_test.yml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False))
    done = subprocess.run(
        ["promtool", "test", "rules", str(test_file)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_generation_model_alerts_when_half_of_max_waiting_wait(tmp_path):
    """GenerationQueueGrowing fires once more than half of batching.max_waiting requests have
    waited for 2 minutes; a short burst, or a queue below half, stays quiet."""
    gpt = next(m for m in MODELS if task_of(m).streams_tokens)
    rules = tmp_path / "rules.yml"
    groups = alert_rules([gpt], ["triton"])
    rules.write_text(yaml.safe_dump(groups))
    rule = next(r for r in groups["groups"][1]["rules"] if r["alert"] == "GenerationQueueGrowing")
    assert "GenerationQueueGrowing" not in str(alert_rules([DIGITS], ["triton"]))
    half = gpt.batching.max_waiting // 2
    labels = {"job": "triton", "model": gpt.name, "version": "1"}
    series = "torchship_num_requests_waiting{" + ",".join(f'{k}="{v}"' for k, v in labels.items())
    exp = {"exp_labels": {"severity": "warning", **labels}, "exp_annotations": rule["annotations"]}

    def case(values: str, fires: bool) -> dict:
        return {
            "interval": "1m",
            "input_series": [{"series": series + "}", "values": values}],
            "alert_rule_test": [
                {
                    "eval_time": "6m",
                    "alertname": "GenerationQueueGrowing",
                    "exp_alerts": [exp] if fires else [],
                }
            ],
        }

    tests = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            case(f"0 {half} {half} {half} {half} {half} {half}", False),  # at half: quiet
            case(f"0 0 0 0 0 {half + 1} 0", False),  # a burst shorter than 2 minutes
            case(f"0 {half + 1} {half + 3} {half + 5} {half + 7} {half + 9} {half + 9}", True),
        ],
    }
    test_file = tmp_path / "rules_test.yml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False))
    done = subprocess.run(
        ["promtool", "test", "rules", str(test_file)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
