"""End to end: start the pack the way Pulumi does (`python policies/`) and talk gRPC to it.

This is what `pulumi preview --policy-pack policies` relies on: the process prints its port, then
answers GetAnalyzerInfo, Analyze and AnalyzeStack. The process is started and stopped here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi_policy.proxy import UNKNOWN_BOOLEAN_VALUE

import policies
from policies import RULES

pytestmark = pytest.mark.e2e
PACK_DIR = Path(policies.__file__).parent


@pytest.fixture(scope="module")
def analyzer() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    env = {**os.environ, "PULUMI_STACK": "prod"}
    env.pop("CDAO_POLICY_STACK", None)
    proc = subprocess.Popen(
        [sys.executable, str(PACK_DIR)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=PACK_DIR.parent,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        assert line.isdigit(), f"pack did not print its port: {line!r} {proc.stderr.read() if proc.poll() else ''}"
        channel = grpc.insecure_channel(f"127.0.0.1:{line}")
        grpc.channel_ready_future(channel).result(timeout=30)
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _struct(props: dict) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(props)
    return s


def test_analyzer_info_lists_every_rule(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "cdao-platform"
    assert [p.name for p in info.policies] == [r.id for r in RULES]
    levels = {p.name: p.enforcementLevel for p in info.policies}
    assert levels["CDAO-DATA-012"] == analyzer_pb2.MANDATORY
    assert levels["CDAO-IAM-002"] == analyzer_pb2.ADVISORY


def test_analyze_reports_mandatory_and_unknown_as_advisory(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    tags = {"team": "ml", "cost-center": "cc", "environment": "prod"}
    bad = analyzer.Analyze(
        analyzer_pb2.AnalyzeRequest(
            type="aws:efs/fileSystem:FileSystem", name="fs", urn="urn:fs", properties=_struct({"tags": tags})
        )
    )
    assert [(d.policyName, d.enforcementLevel) for d in bad.diagnostics] == [("CDAO-DATA-012", analyzer_pb2.MANDATORY)]
    unknown = analyzer.Analyze(
        analyzer_pb2.AnalyzeRequest(
            type="aws:efs/fileSystem:FileSystem",
            name="fs",
            urn="urn:fs",
            properties=_struct({"tags": tags, "encrypted": UNKNOWN_BOOLEAN_VALUE}),
        )
    )
    [diag] = unknown.diagnostics
    assert diag.policyName == "CDAO-DATA-012"
    assert diag.enforcementLevel == analyzer_pb2.ADVISORY
    assert "unknown at preview" in diag.message


def test_analyze_stack_relates_resources(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    vpc = analyzer_pb2.AnalyzerResource(
        type="aws:ec2/vpc:Vpc", name="vpc", urn="urn:vpc", properties=_struct({"cidrBlock": "10.0.0.0/16"})
    )
    response = analyzer.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=[vpc]))
    flagged = {(d.policyName, d.urn) for d in response.diagnostics}
    assert ("CDAO-NET-006", "urn:vpc") in flagged
