"""A local flyteadmin stand-in for the matchable attributes `cdao flyte-projects` sets: flyteidl's
AdminService (the installed flyteidl is the source of the messages) answering as flyteadmin v1.16.8
does: GetProjectDomainAttributes is NotFound until an attribute is set
(flyteadmin/pkg/repositories/gormimpl/resource_repo.go `Get`), UpdateProjectDomainAttributes replaces
the stored attribute (flyteadmin/pkg/manager/impl/resources/resource_manager.go, CreateOrUpdate), an
unknown project is InvalidArgument (validation.ValidateProjectDomainAttributesUpdateRequest ->
ValidateProjectAndDomain)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent import futures

import grpc
from flyteidl.admin import matchable_resource_pb2, project_domain_attributes_pb2
from flyteidl.service import admin_pb2_grpc
from flytekit.configuration import PlatformConfig

KIND = matchable_resource_pb2.MatchableResource.WORKFLOW_EXECUTION_CONFIG


class Admin(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, projects: set[str]):
        self.projects = projects
        self.stored: dict[tuple[str, str, int], project_domain_attributes_pb2.ProjectDomainAttributes] = {}
        self.updates: list[project_domain_attributes_pb2.ProjectDomainAttributesUpdateRequest] = []

    def GetProjectDomainAttributes(self, request, context):
        stored = self.stored.get((request.project, request.domain, request.resource_type))
        if stored is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Resource [{request.project} {request.domain}] not found")
        return project_domain_attributes_pb2.ProjectDomainAttributesGetResponse(attributes=stored)

    def UpdateProjectDomainAttributes(self, request, context):
        self.updates.append(request)
        attributes = request.attributes
        if attributes.project not in self.projects:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"project [{attributes.project}] does not exist")
        kind = attributes.matching_attributes.WhichOneof("target")
        self.stored[(attributes.project, attributes.domain, KIND if kind == "workflow_execution_config" else -1)] = (
            attributes
        )
        return project_domain_attributes_pb2.ProjectDomainAttributesUpdateResponse()


@contextlib.contextmanager
def serve(projects: set[str]) -> Iterator[tuple[Admin, PlatformConfig]]:
    """The server on 127.0.0.1 (a free port) and the PlatformConfig that reaches it; starting it takes
    a few milliseconds."""
    servicer = Admin(projects)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    admin_pb2_grpc.add_AdminServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, PlatformConfig(endpoint=f"127.0.0.1:{port}", insecure=True)
    finally:
        server.stop(None)
