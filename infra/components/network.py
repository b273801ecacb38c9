"""Three-tier VPC: public subnets for load balancers and NAT, private subnets for nodes and pods,
database subnets with no route to the internet at all."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.lib import iam
from infra.lib.shared import kept_on_teardown

# Interface endpoints that keep the heaviest node traffic off the NAT gateways: image pulls (ECR API
# and the Docker registry), IRSA token exchange (STS) and log shipping (CloudWatch Logs).
INTERFACE_ENDPOINT_SERVICES = ("ecr.api", "ecr.dkr", "sts", "logs")
# AmazonEMRServicePolicy_v2 launches instances and creates its default security groups only in
# subnets, security groups and VPCs carrying this tag ("CreateInTaggedNetwork",
# "CreateDefaultSecurityGroupInVPCWithEMRTags"; policy v6 of
# https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AmazonEMRServicePolicy_v2.html).
EMR_MANAGED_POLICY_TAGS = {"for-use-with-amazon-emr-managed-policies": "true"}

# How long each route through the transit gateway keeps retrying CreateRoute while AWS answers
# InvalidTransitGatewayID.NotFound (see _transit_gateway_routes): the cluster's and the cpu pool's
# creation (about 20 minutes), which nothing through the routes needs, plus the owner's acceptance.
ROUTE_ACCEPTANCE_TIMEOUT = "60m"


@dataclass(frozen=True)
class NetworkArgs:
    region: str
    vpc_cidr: str
    availability_zones: Sequence[str]
    public_subnet_cidrs: Sequence[str]
    private_subnet_cidrs: Sequence[str]
    database_subnet_cidrs: Sequence[str]
    single_nat_gateway: bool
    flow_log_retention_days: int
    interface_endpoints: bool
    cluster_name: str
    # Networks outside the VPC that reach the cluster's private endpoint through this transit gateway.
    transit_gateway_id: str | None = None
    transit_gateway_cidrs: Sequence[str] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    # Every stack but dev: the flow-log group is protected (infra/components/shared.py kept_on_teardown).
    keep_on_teardown: bool = False


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    public_subnet_ids: list[pulumi.Output[str]]
    private_subnet_ids: list[pulumi.Output[str]]
    database_subnet_ids: list[pulumi.Output[str]]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cdao:infra:Network", name, None, opts)
        self._name, self._args = name, args
        child = pulumi.ResourceOptions(parent=self)

        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.vpc_cidr,
            enable_dns_hostnames=True,  # required for interface endpoints' private DNS and EKS nodes
            enable_dns_support=True,
            # EMR's managed service policy creates its default security groups only in a tagged VPC.
            tags=self._tags(f"{name}-vpc", EMR_MANAGED_POLICY_TAGS),
            opts=child,
        )
        self.vpc_id = vpc.id
        vpc_child = pulumi.ResourceOptions(parent=vpc)

        # CIS AWS 5.4: the default security group must allow nothing; adopting it with no rules
        # strips the implicit allow-all that AWS creates.
        aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg",
            vpc_id=vpc.id,
            ingress=[],
            egress=[],
            tags=self._tags(f"{name}-default-deny"),
            opts=vpc_child,
        )

        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=self._tags(f"{name}-igw"), opts=vpc_child)

        public = self._subnets(vpc, "public", args.public_subnet_cidrs, {"kubernetes.io/role/elb": "1"})
        private = self._subnets(
            vpc,
            "private",
            args.private_subnet_cidrs,
            # Internal load balancers land here; Karpenter/autoscaler discovery uses the cluster tag.
            # EMR-on-EC2 clusters launch here (cluster Secret `private-subnet-ids`).
            {
                "kubernetes.io/role/internal-elb": "1",
                f"kubernetes.io/cluster/{args.cluster_name}": "shared",
                **EMR_MANAGED_POLICY_TAGS,
            },
        )
        database = self._subnets(vpc, "database", args.database_subnet_cidrs, {})
        self.public_subnet_ids = [s.id for s in public]
        self.private_subnet_ids = [s.id for s in private]
        self.database_subnet_ids = [s.id for s in database]

        # Every route is a standalone aws.ec2.Route and no table sets `routes`: pulumi-aws forbids
        # mixing the two on one table (pulumi_aws/ec2/route_table.py, "NOTE on Route Tables and
        # Routes"; terraform-provider-aws internal/service/ec2/vpc_route_table.go, whose Update deletes
        # every stored route missing from the inline list), and the transit-gateway routes of
        # _transit_gateway_routes must be standalone. Policy CDAO-NET-011 refuses the mix.
        public_rt = aws.ec2.RouteTable(
            f"{name}-public-rt", vpc_id=vpc.id, tags=self._tags(f"{name}-public"), opts=vpc_child
        )
        aws.ec2.Route(
            f"{name}-public-default",
            route_table_id=public_rt.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=igw.id,
            opts=pulumi.ResourceOptions(parent=public_rt),
        )
        for az, subnet in zip(args.availability_zones, public, strict=True):
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{az}",
                subnet_id=subnet.id,
                route_table_id=public_rt.id,
                opts=pulumi.ResourceOptions(parent=subnet),
            )

        nat_ids = self._nat_gateways(vpc, public, igw)
        private_rts = []
        for index, (az, subnet) in enumerate(zip(args.availability_zones, private, strict=True)):
            # With a single NAT every AZ routes through the first AZ's gateway: cheaper, but an AZ
            # outage there cuts egress for all. That is the dev trade-off; prod uses one per AZ.
            nat_id = nat_ids[0] if args.single_nat_gateway else nat_ids[index]
            rt = aws.ec2.RouteTable(
                f"{name}-private-{az}", vpc_id=vpc.id, tags=self._tags(f"{name}-private-{az}"), opts=vpc_child
            )
            aws.ec2.Route(
                f"{name}-private-{az}-default",
                route_table_id=rt.id,
                destination_cidr_block="0.0.0.0/0",
                nat_gateway_id=nat_id,
                opts=pulumi.ResourceOptions(parent=rt),
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{az}",
                subnet_id=subnet.id,
                route_table_id=rt.id,
                opts=pulumi.ResourceOptions(parent=subnet),
            )
            private_rts.append(rt)
        self.api_access_routes = self._transit_gateway_routes(vpc, private, private_rts)

        database_rt = aws.ec2.RouteTable(
            f"{name}-database-rt", vpc_id=vpc.id, tags=self._tags(f"{name}-database"), opts=vpc_child
        )
        for az, subnet in zip(args.availability_zones, database, strict=True):
            aws.ec2.RouteTableAssociation(
                f"{name}-database-{az}",
                subnet_id=subnet.id,
                route_table_id=database_rt.id,
                opts=pulumi.ResourceOptions(parent=subnet),
            )

        # S3 traffic (Flyte metadata, datasets, checkpoints) is the bulk of egress: a gateway endpoint
        # is free, whereas the same bytes through NAT cost $0.045/GB.
        s3_endpoint = aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{args.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[rt.id for rt in private_rts] + [database_rt.id],
            tags=self._tags(f"{name}-s3"),
            opts=vpc_child,
        )
        self.s3_endpoint_id = s3_endpoint.id
        self.interface_endpoint_security_group_id: pulumi.Output[str] | None = None
        if args.interface_endpoints:
            self._interface_endpoints(vpc, private)

        self.flow_log_group_name = self._flow_logs(vpc)

        # The stack outputs this component contributes (infra/program.py exports them; the names are stable:
        # tests/infra and cdao doctor read them).
        self.stack_outputs: dict[str, Any] = {
            "vpcId": self.vpc_id,
            "privateSubnetIds": self.private_subnet_ids,
            "databaseSubnetIds": self.database_subnet_ids,
        }
        # Its entry in the stack output `logGroups` (what `cdao doctor` checks retention against).
        self.log_groups = {
            "flowLogs": {"name": self.flow_log_group_name, "retentionDays": args.flow_log_retention_days}
        }
        self.register_outputs(
            {
                "vpcId": self.vpc_id,
                "publicSubnetIds": self.public_subnet_ids,
                "privateSubnetIds": self.private_subnet_ids,
                "databaseSubnetIds": self.database_subnet_ids,
                "natGatewayIds": nat_ids,
                "s3EndpointId": self.s3_endpoint_id,
                "flowLogGroupName": self.flow_log_group_name,
            }
        )

    def _transit_gateway_routes(
        self, vpc: aws.ec2.Vpc, private: list[aws.ec2.Subnet], tables: list[aws.ec2.RouteTable]
    ) -> list[aws.ec2.Route]:
        """Attach the private subnets (where EKS puts the control plane's ENIs) to the transit gateway
        and route each connected network's CIDR to it, so the private endpoint can answer them (EKS
        user guide, cluster-endpoint.html, "Accessing a private only API server"). The transit
        gateway's own route tables (association, propagation) belong to its owner: a RAM-shared gateway
        refuses both settings from this account (pulumi_aws ec2transitgateway.VpcAttachment docs).

        A gateway of another account that does not auto-accept shared attachments leaves this one
        `pendingAcceptance` until its owner accepts it, and pulumi-aws counts that as created
        (hashicorp/terraform-provider-aws internal/service/ec2 wait.go,
        waitTransitGatewayVPCAttachmentCreated): `pulumi up` goes on without waiting, and traffic
        flows only once the owner accepts (docs/first-deploy.md, step 4).

        Whether CreateRoute accepts a gateway whose attachment to this VPC is still pending, no AWS
        document says (the Transit Gateway guide, tgw-vpc-attachments.html, says only that a gateway
        needs a VPC attachment before a route table can name it). The provider retries CreateRoute
        while AWS answers InvalidTransitGatewayID.NotFound, for the route's create timeout
        (terraform-provider-aws internal/service/ec2/vpc_route.go at 0128541e, resourceRouteCreate),
        and users of shared gateways saw exactly that error until the attachment was accepted
        (terraform-provider-aws #10025). The routes' timeout is therefore the owner's window:
        ROUTE_ACCEPTANCE_TIMEOUT instead of the provider's 5 minutes."""
        args = self._args
        if args.transit_gateway_id is None or not args.transit_gateway_cidrs:
            return []
        attachment = aws.ec2transitgateway.VpcAttachment(
            f"{self._name}-tgw",
            transit_gateway_id=args.transit_gateway_id,
            vpc_id=vpc.id,
            subnet_ids=[s.id for s in private],
            tags=self._tags(f"{self._name}-tgw"),
            opts=pulumi.ResourceOptions(parent=vpc),
        )
        return [
            aws.ec2.Route(
                f"{self._name}-api-access-{az}-{cidr.replace('/', '-')}",
                route_table_id=table.id,
                destination_cidr_block=cidr,
                transit_gateway_id=args.transit_gateway_id,
                # CreateRoute to a transit gateway the VPC is not attached to yet is refused.
                opts=pulumi.ResourceOptions(
                    parent=table,
                    depends_on=[attachment],
                    custom_timeouts=pulumi.CustomTimeouts(create=ROUTE_ACCEPTANCE_TIMEOUT),
                ),
            )
            for az, table in zip(args.availability_zones, tables, strict=True)
            for cidr in args.transit_gateway_cidrs
        ]

    def _tags(self, name: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {**self._args.tags, "Name": name, **(extra or {})}

    def _subnets(
        self, vpc: aws.ec2.Vpc, tier: str, cidrs: Sequence[str], extra_tags: Mapping[str, str]
    ) -> list[aws.ec2.Subnet]:
        return [
            aws.ec2.Subnet(
                f"{self._name}-{tier}-{az}",
                vpc_id=vpc.id,
                cidr_block=cidr,
                availability_zone=az,
                # No subnet hands out public IPs: NAT gateways and load balancers get theirs explicitly.
                map_public_ip_on_launch=False,
                tags=self._tags(f"{self._name}-{tier}-{az}", {"tier": tier, **extra_tags}),
                opts=pulumi.ResourceOptions(parent=vpc),
            )
            for az, cidr in zip(self._args.availability_zones, cidrs, strict=True)
        ]

    def _nat_gateways(
        self, vpc: aws.ec2.Vpc, public: list[aws.ec2.Subnet], igw: aws.ec2.InternetGateway
    ) -> list[pulumi.Output[str]]:
        azs = self._args.availability_zones[:1] if self._args.single_nat_gateway else self._args.availability_zones
        ids = []
        for az, subnet in zip(azs, public, strict=False):
            eip = aws.ec2.Eip(
                f"{self._name}-nat-{az}",
                domain="vpc",
                tags=self._tags(f"{self._name}-nat-{az}"),
                opts=pulumi.ResourceOptions(parent=vpc),
            )
            nat = aws.ec2.NatGateway(
                f"{self._name}-nat-{az}",
                allocation_id=eip.id,
                subnet_id=subnet.id,
                tags=self._tags(f"{self._name}-nat-{az}"),
                # A NAT gateway created before the IGW is attached fails to route; AWS does not order it.
                opts=pulumi.ResourceOptions(parent=vpc, depends_on=[igw]),
            )
            ids.append(nat.id)
        return ids

    def _interface_endpoints(self, vpc: aws.ec2.Vpc, private: list[aws.ec2.Subnet]) -> None:
        sg = aws.ec2.SecurityGroup(
            f"{self._name}-endpoints",
            vpc_id=vpc.id,
            description="HTTPS from inside the VPC to AWS interface endpoints",
            tags=self._tags(f"{self._name}-endpoints"),
            opts=pulumi.ResourceOptions(parent=vpc),
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{self._name}-endpoints-https",
            security_group_id=sg.id,
            cidr_ipv4=self._args.vpc_cidr,
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            description="HTTPS from the VPC",
            tags=self._tags(f"{self._name}-endpoints-https"),
            opts=pulumi.ResourceOptions(parent=sg),
        )
        self.interface_endpoint_security_group_id = sg.id
        for service in INTERFACE_ENDPOINT_SERVICES:
            aws.ec2.VpcEndpoint(
                f"{self._name}-{service.replace('.', '-')}",
                vpc_id=vpc.id,
                service_name=f"com.amazonaws.{self._args.region}.{service}",
                vpc_endpoint_type="Interface",
                private_dns_enabled=True,
                subnet_ids=[s.id for s in private],
                security_group_ids=[sg.id],
                tags=self._tags(f"{self._name}-{service}"),
                opts=pulumi.ResourceOptions(parent=vpc),
            )

    def _flow_logs(self, vpc: aws.ec2.Vpc) -> pulumi.Output[str]:
        opts = pulumi.ResourceOptions(parent=vpc)
        group = aws.cloudwatch.LogGroup(
            f"{self._name}-flow-logs",
            name=pulumi.Output.concat("/aws/vpc/", vpc.id, "/flow-logs"),
            retention_in_days=self._args.flow_log_retention_days,
            tags=self._tags(f"{self._name}-flow-logs"),
            opts=kept_on_teardown(opts, self._args.keep_on_teardown),
        )
        role = aws.iam.Role(
            f"{self._name}-flow-logs",
            description="Lets VPC Flow Logs deliver to this VPC's log group only",
            assume_role_policy=iam.service_trust(
                "vpc-flow-logs.amazonaws.com", aws.get_caller_identity_output().account_id
            ),
            tags=self._tags(f"{self._name}-flow-logs"),
            opts=opts,
        )
        aws.iam.RolePolicy(
            f"{self._name}-flow-logs",
            role=role.id,
            policy=group.arn.apply(
                lambda arn: iam.document(
                    # What the VPC user guide says the role needs "at least" (flow-logs-iam-role.html;
                    # tests/infra/data/upstream_controller_policies.yaml), narrowed to this group
                    # except DescribeLogGroups, a list call that names no group.
                    [
                        iam.allow(
                            "DeliverFlowLogs",
                            [
                                "logs:CreateLogGroup",
                                "logs:CreateLogStream",
                                "logs:PutLogEvents",
                                "logs:DescribeLogStreams",
                            ],
                            [arn, f"{arn}:*"],
                        ),
                        iam.allow("FindFlowLogGroup", ["logs:DescribeLogGroups"], ["*"]),
                    ]
                )
            ),
            opts=pulumi.ResourceOptions(parent=role),
        )
        aws.ec2.FlowLog(
            f"{self._name}-flow-log",
            vpc_id=vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=group.arn,
            iam_role_arn=role.arn,
            max_aggregation_interval=60,
            tags=self._tags(f"{self._name}-flow-log"),
            opts=opts,
        )
        return group.name
