"""The platform's public name: the TLS certificate of Flyte's console and API."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class FlyteEndpointArgs:
    hostname: str
    validation: Literal["route53", "external"]
    hosted_zone_id: str | None
    tags: Mapping[str, str] = field(default_factory=dict)


class FlyteEndpoint(pulumi.ComponentResource):
    """An ACM certificate for the hostname, DNS-validated in Route 53 (validation "route53") or by
    the DNS owner from the record this component exports (validation "external").

    The ALB itself belongs to the AWS Load Balancer Controller (platform/), which finds this
    certificate through the cluster Secret; infra/ never creates load balancers behind its back.
    """

    def __init__(self, name: str, args: FlyteEndpointArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cdao:infra:FlyteEndpoint", name, None, opts)
        certificate = aws.acm.Certificate(
            f"{name}-cert",
            domain_name=args.hostname,
            validation_method="DNS",
            key_algorithm="EC_prime256v1",
            tags={**args.tags, "Name": args.hostname},
            # A certificate in use by a listener cannot be deleted: create the new one first.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=False),
        )
        option = certificate.domain_validation_options.apply(lambda options: options[0])
        self.validation_record = pulumi.Output.all(
            option.resource_record_name, option.resource_record_type, option.resource_record_value
        ).apply(lambda r: {"name": r[0], "type": r[1], "value": r[2]})
        fqdns: list[pulumi.Input[str]] | None = None
        if args.validation == "route53":
            record = aws.route53.Record(
                f"{name}-validation",
                zone_id=args.hosted_zone_id,
                name=option.resource_record_name,
                type=option.resource_record_type,
                records=[option.resource_record_value],
                ttl=300,
                allow_overwrite=True,
                opts=pulumi.ResourceOptions(parent=certificate),
            )
            fqdns = [record.fqdn]
        # Both modes wait for ACM to issue the certificate and hand out the ARN only then, so the ALB
        # never gets a pending certificate. Externally the DNS owner creates the record meanwhile;
        # the provider's default create timeout is 75 minutes
        # (hashicorp/terraform-provider-aws website/docs/r/acm_certificate_validation.html.markdown).
        validation = aws.acm.CertificateValidation(
            f"{name}-validation",
            certificate_arn=certificate.arn,
            validation_record_fqdns=fqdns,
            opts=pulumi.ResourceOptions(parent=certificate),
        )
        self.certificate_arn = validation.certificate_arn
        # The stack outputs this component contributes (infra/program.py exports them; the names are stable:
        # tests/infra and cdao doctor read them).
        self.stack_outputs: dict[str, Any] = {
            "flyteEndpoint": f"https://{args.hostname}",
            "flyteCertificateValidationRecord": self.validation_record,
            "flyteCertificateArn": self.certificate_arn,
        }
        self.register_outputs({"certificateArn": self.certificate_arn, "validationRecord": self.validation_record})
