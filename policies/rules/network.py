"""Network: EKS endpoint exposure, world-open ingress, IMDS, public IPs in private subnets, flow logs."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

from policies.core import (
    Context,
    Finding,
    Resource,
    Rule,
    UnknownValue,
    UnknownValueFound,
    as_list,
    dig,
    iter_known,
    resource_rule,
    stack_rule,
    to_bool,
    to_number,
)
from policies.rules._common import (
    COVERED,
    EKS_COMPONENT,
    INSTANCE_LIKE,
    LAUNCH_TEMPLATE,
    UNKNOWN,
    coverage,
    eks_default_pool,
    identifiers,
)

RULES: list[Rule] = []

_WORLD = ("0.0.0.0/0", "::/0")


def _is_world(cidr: str) -> bool:
    try:
        return ipaddress.ip_network(cidr.strip(), strict=False).prefixlen == 0
    except ValueError:
        return False


@resource_rule(
    RULES,
    id="CDAO-NET-001",
    name="EKS public API endpoint open to 0.0.0.0/0",
    description=(
        "The EKS API endpoint is public (the default for both aws.eks.Cluster and pulumi-eks) and "
        "publicAccessCidrs is unset (AWS then uses 0.0.0.0/0) or contains 0.0.0.0/0 or ::/0."
    ),
    remediation=(
        "Set endpointPublicAccess=false (private endpoint + VPN), or list office/CI CIDRs in publicAccessCidrs."
    ),
    level="mandatory",
    types=("aws:eks/cluster:Cluster", EKS_COMPONENT),
)
def net_001_eks_endpoint(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    base: tuple[str, ...] = () if res.type == EKS_COMPONENT else ("vpcConfig",)
    public = to_bool(res.get(*base, "endpointPublicAccess", default=True))
    if public is False:
        return
    cidrs = as_list(res.get(*base, "publicAccessCidrs"))
    if not cidrs:
        yield "public endpoint without publicAccessCidrs (defaults to 0.0.0.0/0)"
        return
    world = [c for c in iter_known(cidrs) if isinstance(c, str) and _is_world(c)]
    if world:
        yield f"public endpoint open to {world}"


SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
# The VPC default group takes the same inline `ingress` blocks.
SECURITY_GROUPS = (SECURITY_GROUP, "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
_LB_TYPES = ("aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer")


def _world_open(cidrs: list[Any]) -> bool | None:
    """Whether the known CIDRs together cover all of IPv4 or IPv6 (0.0.0.0/0, or halves such as
    0.0.0.0/1 + 128.0.0.0/1); None when they do not but an unknown CIDR might complete them."""
    known: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    unknown = False
    for c in cidrs:
        if isinstance(c, UnknownValue):
            unknown = True
        elif isinstance(c, str):
            try:
                known.append(ipaddress.ip_network(c.strip(), strict=False))
            except ValueError:
                continue
    for version, world in ((4, ipaddress.ip_network("0.0.0.0/0")), (6, ipaddress.ip_network("::/0"))):
        nets = [n for n in known if n.version == version]
        if world in ipaddress.collapse_addresses(nets):  # type: ignore[arg-type]
            return True
    return None if unknown else False


# (label, protocol, from, to, owning SG or None, what is unknown or None) for each ingress of a group
# that is world-open, or that may be (an unknown CIDR); one unknown entry never hides the others.
_Ingress = tuple[str, Any, Any, Any, "Resource | None", "str | None"]


def _open_ingress(res: Resource) -> Iterator[_Ingress]:
    """World-open (or possibly world-open) ingress entries of `res`; see _Ingress."""
    entries: list[tuple[str, Any, Any, Any, list[Any], Resource | None]] = []
    try:
        if res.type in SECURITY_GROUPS:
            rules = res.props.get("ingress")
            if isinstance(rules, UnknownValue):
                yield "ingress", None, None, None, res, rules.path or "ingress"
                return
            for i, rule in enumerate(as_list(rules)):
                if isinstance(rule, UnknownValue):
                    yield f"ingress[{i}]", None, None, None, res, rule.path or f"ingress[{i}]"
                    continue
                if not isinstance(rule, dict):
                    continue
                cidrs = [*_cidr_list(rule.get("cidrBlocks")), *_cidr_list(rule.get("ipv6CidrBlocks"))]
                entries.append(
                    (f"ingress[{i}]", rule.get("protocol"), rule.get("fromPort"), rule.get("toPort"), cidrs, res)
                )
        elif res.type == INGRESS_RULE:
            cidrs = [res.props.get("cidrIpv4"), res.props.get("cidrIpv6")]
            entries.append(
                ("rule", res.props.get("ipProtocol"), res.props.get("fromPort"), res.props.get("toPort"), cidrs, None)
            )
        elif res.type == SG_RULE and str(res.get("type", default="")).lower() == "ingress":
            cidrs = [*_cidr_list(res.props.get("cidrBlocks")), *_cidr_list(res.props.get("ipv6CidrBlocks"))]
            entries.append(
                ("rule", res.props.get("protocol"), res.props.get("fromPort"), res.props.get("toPort"), cidrs, None)
            )
    except UnknownValueFound as exc:
        yield "rule", None, None, None, None, exc.what
        return
    for label, proto, lo, hi, cidrs, owner in entries:
        world = _world_open(cidrs)
        if world is None:
            yield label, proto, lo, hi, owner, f"{label} source CIDR"
        elif world:
            yield label, proto, lo, hi, owner, None


def _cidr_list(value: Any) -> list[Any]:
    return [value] if isinstance(value, UnknownValue) else as_list(value)


# Security Hub EC2.18's default authorizedTcpPorts: 80 (an ALB's HTTP listener, which redirects to
# HTTPS) and 443. https://docs.aws.amazon.com/securityhub/latest/userguide/ec2-controls.html#ec2-18
AUTHORIZED_TCP_PORTS = (80, 443)


def _authorized_port(protocol: Any, lo: Any, hi: Any) -> bool:
    """TCP on exactly one of AUTHORIZED_TCP_PORTS; raises UnknownValueFound on an unknown field."""
    if isinstance(protocol, UnknownValue):
        raise UnknownValueFound(protocol.path or "protocol")
    proto = str(protocol).lower() if protocol is not None else ""
    low, high = to_number(lo), to_number(hi)
    return proto in ("tcp", "6") and low == high and low in AUTHORIZED_TCP_PORTS


def _public_lb_sg_ids(resources: list[Resource]) -> tuple[set[str], bool]:
    ids: set[str] = set()
    uncertain = False
    for lb in resources:
        if lb.type not in _LB_TYPES:
            continue
        try:
            if to_bool(lb.get("internal", default=False)) is True:
                continue
            for sg in iter_known(as_list(lb.get("securityGroups"))):
                if isinstance(sg, str):
                    ids.add(sg)
        except UnknownValueFound:
            uncertain = True
        ids.update(lb.deps.get("securityGroups", ()))
    return ids, uncertain


def _listed(owner: Resource | None, raw_id: Any, listed: list[str]) -> bool:
    """Whether the pack config names this group in publicSecurityGroups: its Pulumi logical name,
    id, group name, or its `Name` tag, the name the AWS Load Balancer Controller's
    alb.ingress.kubernetes.io/security-groups annotation resolves ("Name matches a Name tag, not the
    groupName attribute": kubernetes-sigs/aws-load-balancer-controller docs/guide/ingress/annotations.md)."""
    if not listed:
        return False
    names: set[str] = set()
    if owner is not None:
        names |= identifiers(owner, "name")[0] | {owner.name}
        tag = owner.props.get("tags")
        name_tag = tag.get("Name") if isinstance(tag, dict) else None
        if isinstance(name_tag, str):
            names.add(name_tag)
    if isinstance(raw_id, str):
        names.add(raw_id)
    return bool(names & set(listed))


@stack_rule(
    RULES,
    id="CDAO-NET-002",
    name="Security group ingress from the internet on a port other than TCP 80 or 443",
    description=(
        "Ingress from the whole IPv4 or IPv6 space (0.0.0.0/0, ::/0, or CIDRs that together cover it, such "
        "as 0.0.0.0/1 + 128.0.0.0/1; inline ingress, SecurityGroupRule or vpc SecurityGroupIngressRule) is "
        "allowed only for TCP 80 and 443, the default authorized ports of AWS Security Hub control EC2.18 "
        "(https://docs.aws.amazon.com/securityhub/latest/userguide/ec2-controls.html#ec2-18); where an 80/443 "
        "group is attached is CDAO-NET-008's question. An ingress entry whose CIDR is unknown at preview is "
        "reported as 'cannot verify' without hiding the group's other entries."
    ),
    remediation="Restrict the source CIDR or security group; expose services through a public LB on 80/443 only.",
    level="mandatory",
)
def net_002_open_ingress(resources: list[Resource], _ctx: Context) -> Iterator[Finding]:
    for res in resources:
        if res.type not in (*SECURITY_GROUPS, INGRESS_RULE, SG_RULE):
            continue
        for label, proto, lo, hi, _owner, unknown_cidr in _open_ingress(res):
            unknown = unknown_cidr
            try:
                if _authorized_port(proto, lo, hi):
                    continue
            except UnknownValueFound as exc:
                unknown = unknown or exc.what
            if unknown:
                yield Finding(f"cannot verify: {unknown}", res, unknown=True)
            else:
                yield Finding(f"{label} opens protocol {proto} ports {lo}-{hi} to the internet", res)


def _attached_to_public_lb(
    res: Resource, owner: Resource | None, sgs: list[Resource], lb_sgs: set[str]
) -> tuple[bool | None, Resource | None]:
    """(True/False, or None when the owning group cannot be identified; the owning group if found)."""
    if owner is None:
        candidates = [sg for sg, status, _ in coverage(sgs, [res], "securityGroupId", ()) if status == COVERED]
        if not candidates:
            raw = res.props.get("securityGroupId")
            if isinstance(raw, str):
                return raw in lb_sgs, None
            return None, None
        owner = candidates[0]
    ids, uncertain = identifiers(owner)
    if ids & lb_sgs:
        return True, owner
    return (None if uncertain and not (ids - {owner.urn}) else False), owner


@resource_rule(
    RULES,
    id="CDAO-NET-003",
    name="IMDSv1 allowed (httpTokens not 'required')",
    description=(
        "Launch templates, launch configurations and instances must require IMDSv2 session tokens; "
        "httpTokens defaults to 'optional', which leaves IMDSv1 open to SSRF credential theft."
    ),
    remediation="Set metadataOptions={'httpTokens': 'required', 'httpPutResponseHopLimit': 1}.",
    level="mandatory",
    types=(LAUNCH_TEMPLATE, *INSTANCE_LIKE),
)
def net_003_imdsv1(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    if str(res.get("metadataOptions", "httpEndpoint", default="enabled")).lower() == "disabled":
        return
    tokens = res.get("metadataOptions", "httpTokens", default="optional")
    if str(tokens).lower() != "required":
        yield f"metadataOptions.httpTokens is {tokens!r}"


@resource_rule(
    RULES,
    id="CDAO-NET-004",
    name="IMDS hop limit above 1",
    description=(
        "httpPutResponseHopLimit > 1 lets containers reach the node's instance metadata and its role "
        "credentials; pods get credentials through IRSA instead."
    ),
    remediation="Set metadataOptions.httpPutResponseHopLimit=1.",
    level="mandatory",
    types=(LAUNCH_TEMPLATE, *INSTANCE_LIKE),
)
def net_004_hop_limit(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    if str(res.get("metadataOptions", "httpEndpoint", default="enabled")).lower() == "disabled":
        return
    hops = to_number(res.get("metadataOptions", "httpPutResponseHopLimit", default=1))
    if hops is not None and hops > 1:
        yield f"metadataOptions.httpPutResponseHopLimit is {hops:g}"


_PRIVATE_TIERS = ("private", "database", "data", "isolated")


@resource_rule(
    RULES,
    id="CDAO-NET-005",
    name="Public IPs assigned in a private subnet",
    description=(
        "A subnet tagged tier=private|database (or kubernetes.io/role/internal-elb) has "
        "mapPublicIpOnLaunch=true, so instances launched there get public addresses; or pulumi-eks's "
        "default node group, placed in private subnets, keeps nodeAssociatePublicIpAddress at its "
        "default (true)."
    ),
    remediation=(
        "Set mapPublicIpOnLaunch=false on private and database subnets, and nodeAssociatePublicIpAddress=false "
        "on eks.Cluster."
    ),
    level="mandatory",
    types=("aws:ec2/subnet:Subnet", EKS_COMPONENT),
)
def net_005_private_public_ip(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    if res.type == EKS_COMPONENT:
        yield from _eks_node_public_ips(res)
        return
    if to_bool(res.get("mapPublicIpOnLaunch", default=False)) is not True:
        return
    tags = res.get("tags") or {}
    tier = dig(tags, "tier")
    private = (isinstance(tier, str) and tier.lower() in _PRIVATE_TIERS) or "kubernetes.io/role/internal-elb" in tags
    if private:
        yield f"mapPublicIpOnLaunch is true on a {tier or 'private'} subnet"


def _eks_node_public_ips(res: Resource) -> Iterator[str]:
    # pulumi-eks puts its nodes in privateSubnetIds unless nodeSubnetIds names (any) subnets instead.
    if not eks_default_pool(res) or not res.get("privateSubnetIds") or res.get("nodeSubnetIds"):
        return
    flag = res.get("nodeGroupOptions", "nodeAssociatePublicIpAddress")
    if flag is None:
        flag = res.get("nodeAssociatePublicIpAddress", default=True)
    if to_bool(flag) is not False:
        yield "the default node group assigns public IPs to nodes in private subnets"


@stack_rule(
    RULES,
    id="CDAO-NET-006",
    name="VPC without flow logs",
    description="Every VPC has an aws.ec2.FlowLog whose vpcId names it (subnet or ENI flow logs do not count).",
    remediation="Declare aws.ec2.FlowLog(vpc_id=<vpc>.id, traffic_type='ALL') to CloudWatch Logs or S3.",
    level="mandatory",
)
def net_006_flow_logs(resources: list[Resource], _ctx: Context) -> Iterator[Finding]:
    vpcs = [r for r in resources if r.type == "aws:ec2/vpc:Vpc"]
    logs = [r for r in resources if r.type == "aws:ec2/flowLog:FlowLog" and r.props.get("vpcId") is not None]
    for vpc, status, detail in coverage(vpcs, logs, "vpcId", ()):
        if status == UNKNOWN:
            yield Finding(f"cannot verify: {detail}", vpc, unknown=True)
        elif status != COVERED:
            yield Finding("no flow log for this VPC", vpc)


@resource_rule(
    RULES,
    id="CDAO-NET-007",
    name="SageMaker notebook or domain with direct internet access",
    description=(
        "A notebook instance with directInternetAccess 'Enabled' (the default) or a SageMaker domain with "
        "appNetworkAccessType 'PublicInternetOnly' (the default) reaches the internet outside the VPC's "
        "egress controls, so data can leave without passing the NAT, endpoints or flow logs."
    ),
    remediation="Set directInternetAccess='Disabled' (notebooks) or appNetworkAccessType='VpcOnly' (domains).",
    level="mandatory",
    types=("aws:sagemaker/notebookInstance:NotebookInstance", "aws:sagemaker/domain:Domain"),
)
def net_007_sagemaker_internet(res: Resource, _ctx: Context) -> Iterator[str | UnknownValueFound]:
    if res.type == "aws:sagemaker/domain:Domain":
        mode = res.get("appNetworkAccessType", default="PublicInternetOnly")
        if str(mode) != "VpcOnly":
            yield f"appNetworkAccessType is {mode!r}"
        return
    mode = res.get("directInternetAccess", default="Enabled")
    if str(mode).lower() != "disabled":
        yield f"directInternetAccess is {mode!r}"


@stack_rule(
    RULES,
    id="CDAO-NET-008",
    name="TCP 80/443 open to the internet on a security group of no internet-facing load balancer",
    description=(
        "A security group that opens TCP 80 or 443 to the internet is attached to no internet-facing "
        "aws:lb LoadBalancer of the stack and is not listed in publicSecurityGroups. Advisory: 80 and 443 are "
        "the default authorized ports of Security Hub EC2.18, and a group the AWS Load Balancer Controller "
        "attaches through the alb.ingress.kubernetes.io/security-groups annotation (IDs, or names matched "
        "against the group's Name tag, "
        "https://kubernetes-sigs.github.io/aws-load-balancer-controller/latest/guide/ingress/annotations/) "
        "has no load balancer in the stack to be linked to."
    ),
    remediation=(
        "Attach the group to an internet-facing load balancer of the stack, or list it (Pulumi logical name, "
        "group id, group name or Name tag) in publicSecurityGroups for the stack when a controller outside the stack "
        "attaches it."
    ),
    level="advisory",
    settings=("publicSecurityGroups",),
)
def net_008_unlinked_https(resources: list[Resource], ctx: Context) -> Iterator[Finding]:
    listed = list(ctx.setting("publicSecurityGroups"))
    lb_sgs, lb_uncertain = _public_lb_sg_ids(resources)
    sgs = [r for r in resources if r.type in SECURITY_GROUPS]
    for res in resources:
        if res.type not in (*SECURITY_GROUPS, INGRESS_RULE, SG_RULE):
            continue
        try:
            for label, proto, lo, hi, owner, unknown in _open_ingress(res):
                if unknown or not _authorized_port(proto, lo, hi):
                    continue  # CDAO-NET-002's finding
                status, group = _attached_to_public_lb(res, owner, sgs, lb_sgs)
                if status is True or _listed(group, res.props.get("securityGroupId"), listed):
                    continue
                if status is None or lb_uncertain:
                    yield Finding(
                        "cannot verify: which security group/load balancer this 80/443 rule belongs to",
                        res,
                        unknown=True,
                    )
                else:
                    yield Finding(
                        f"{label} opens port {to_number(lo):g} to the internet on a security group of no "
                        "internet-facing load balancer of this stack and not in publicSecurityGroups for "
                        f"{ctx.stack!r}",
                        res,
                    )
        except UnknownValueFound as exc:
            yield Finding(f"cannot verify: {exc.what}", res, unknown=True)


# AmazonEMRServicePolicy_v2 lets EMR create instances and network interfaces only in subnets and
# security groups tagged for-use-with-amazon-emr-managed-policies=true (its statement
# CreateInTaggedNetwork; EMR Management Guide, emr-managed-iam-policies, "Tagging resources to use
# managed policies"). EMR propagates the tag to what it creates, but not to the network it is given.
EMR_V2_POLICY = "AmazonEMRServicePolicy_v2"
EMR_TAG = "for-use-with-amazon-emr-managed-policies"
_ROLE = "aws:iam/role:Role"
_ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
_SUBNET = "aws:ec2/subnet:Subnet"


def _emr_v2_roles(resources: list[Resource]) -> set[str]:
    """Names/ids/ARNs of roles given AmazonEMRServicePolicy_v2 (attachment or managedPolicyArns)."""
    out: set[str] = set()
    for res in resources:
        if res.type == _ATTACHMENT:
            arn, role = res.props.get("policyArn"), res.props.get("role")
            if isinstance(arn, str) and arn.endswith(f"/{EMR_V2_POLICY}") and isinstance(role, str):
                out.add(role)
        elif res.type == _ROLE:
            arns = res.props.get("managedPolicyArns")
            if isinstance(arns, list) and any(isinstance(a, str) and a.endswith(f"/{EMR_V2_POLICY}") for a in arns):
                out |= {
                    v for v in (res.id, res.props.get("name"), res.props.get("arn"), res.name) if isinstance(v, str)
                }
    return out


def _emr_tagged(res: Resource) -> bool:
    # CreateInTaggedNetwork's condition is StringEquals, which is case-sensitive (IAM User Guide,
    # reference_policies_elements_condition_operators): only the exact value "true" counts.
    # tagsAll carries the provider's default tags as well (pulumi-aws `tags_all` docstrings).
    return any(dig(res.get(prop) or {}, EMR_TAG) == "true" for prop in ("tags", "tagsAll"))


# The ec2Attributes of pulumi-aws's emr.Cluster that name the groups EMR's instances and network
# interfaces use (pulumi_aws/emr/_inputs.py, ClusterEc2AttributesArgs); the additional ones are
# comma-separated lists.
_EMR_GROUP_ATTRS = ("emrManagedMasterSecurityGroup", "emrManagedSlaveSecurityGroup", "serviceAccessSecurityGroup")
_EMR_EXTRA_GROUP_ATTRS = ("additionalMasterSecurityGroups", "additionalSlaveSecurityGroups")


def _emr_network(cluster: Resource) -> set[str]:
    """Ids of the subnets and security groups `cluster` runs in; raises UnknownValueFound."""
    wanted = [cluster.get("ec2Attributes", "subnetId"), *as_list(cluster.get("ec2Attributes", "subnetIds"))]
    wanted += [cluster.get("ec2Attributes", attr) for attr in _EMR_GROUP_ATTRS]
    for attr in _EMR_EXTRA_GROUP_ATTRS:
        extra = cluster.get("ec2Attributes", attr)
        if isinstance(extra, str):
            wanted += [g.strip() for g in extra.split(",")]
    return {w for w in wanted if isinstance(w, str) and w}


@stack_rule(
    RULES,
    id="CDAO-NET-009",
    name="EMR cluster in a network its v2 service policy may not use",
    description=(
        "An aws.emr.Cluster whose service role has AmazonEMRServicePolicy_v2 runs in a subnet of the stack "
        "or security group that lacks the tag for-use-with-amazon-emr-managed-policies=true (exactly 'true': the "
        "condition is a case-sensitive StringEquals); the policy's CreateInTaggedNetwork "
        "statement allows RunInstances/CreateNetworkInterface only in tagged subnets and security groups "
        "(EMR Management Guide, emr-managed-iam-policies), so the cluster fails to launch."
    ),
    remediation="Tag the subnets (and the EMR security groups) for-use-with-amazon-emr-managed-policies=true.",
    level="mandatory",
)
def net_009_emr_cluster_network(resources: list[Resource], _ctx: Context) -> Iterator[Finding]:
    roles = _emr_v2_roles(resources)
    subnets = [r for r in resources if r.type in (_SUBNET, *SECURITY_GROUPS)]
    for cluster in (r for r in resources if r.type == "aws:emr/cluster:Cluster"):
        try:
            role = cluster.get("serviceRole")
            if not isinstance(role, str) or not (role in roles or role.rsplit("/", 1)[-1] in roles):
                continue
            wanted = _emr_network(cluster)
            for net in subnets:
                ids, _ = identifiers(net)
                if ids & wanted and not _emr_tagged(net):
                    kind = "subnet" if net.type == _SUBNET else "security group"
                    yield Finding(f"runs in {kind} {net.name}, which lacks {EMR_TAG}=true", cluster)
        except UnknownValueFound as exc:
            yield Finding(f"cannot verify: {exc.what}", cluster, unknown=True)


@stack_rule(
    RULES,
    id="CDAO-NET-010",
    name="EMR v2 service policy with no subnet EMR may use",
    description=(
        "A role of the stack has AmazonEMRServicePolicy_v2 but no subnet of the stack carries "
        "for-use-with-amazon-emr-managed-policies=true, so an EMR cluster launched later (by a connector, a "
        "pipeline) in this VPC fails. Advisory: the clusters may run in another stack's network, which the pack "
        "cannot see (issue 13 #8)."
    ),
    remediation=(
        "Tag the subnets EMR clusters use (and their security groups) for-use-with-amazon-emr-managed-policies=true."
    ),
    level="advisory",
)
def net_010_emr_policy_without_network(resources: list[Resource], _ctx: Context) -> Iterator[Finding]:
    roles = _emr_v2_roles(resources)
    if not roles:
        return
    subnets = [r for r in resources if r.type == _SUBNET]
    unknown = None
    for subnet in subnets:
        try:
            if _emr_tagged(subnet):
                return
        except UnknownValueFound as exc:
            unknown = unknown or exc.what
    holder = next((r for r in resources if r.type == _ATTACHMENT and r.props.get("role") in roles), None)
    if unknown:
        yield Finding(f"cannot verify: {unknown}", holder, unknown=True)
    elif subnets:
        yield Finding(f"no subnet of the stack is tagged {EMR_TAG}=true", holder)


# Resources whose inline property manages a whole collection, paired with the standalone resource
# that manages one member of the same collection. The provider reconciles the inline property
# against everything it reads back, so each side deletes or re-adds what the other declared:
# a drift every refresh and, after any update of the owner, members deleted. Each pair is one the
# installed pulumi-aws 7.x documents as not to be combined:
#   ec2.RouteTable `routes` / ec2.Route: pulumi_aws/ec2/route_table.py, "NOTE on Route Tables and
#     Routes" (terraform-provider-aws internal/service/ec2/vpc_route_table.go: Read stores every
#     route of the table, Update deletes each stored route missing from the inline config);
#   ec2.SecurityGroup `ingress`/`egress` / ec2.SecurityGroupRule, vpc.SecurityGroup{In,E}gressRule:
#     pulumi_aws/ec2/security_group.py, "WARNING: You should not use ... in conjunction";
#   ec2.NetworkAcl `ingress`/`egress` / ec2.NetworkAclRule: pulumi_aws/ec2/network_acl.py;
#   ec2.NatGateway `secondaryAllocationIds` / ec2.NatGatewayEipAssociation: pulumi_aws/ec2/nat_gateway.py;
#   iam.Role `inlinePolicies` / iam.RolePolicy and `managedPolicyArns` / iam.RolePolicyAttachment:
#     pulumi_aws/iam/role.py ("an exclusive set ... Pulumi will align the role's managed policy
#     attachments with this set by attaching or detaching").
# The default route table, security group and network ACL take the same inline blocks.
_INLINE_VS_MEMBER: tuple[tuple[tuple[str, ...], str, tuple[str, ...], str], ...] = (
    (
        ("aws:ec2/routeTable:RouteTable", "aws:ec2/defaultRouteTable:DefaultRouteTable"),
        "routes",
        ("aws:ec2/route:Route",),
        "routeTableId",
    ),
    *(
        (
            SECURITY_GROUPS,
            prop,
            (SG_RULE, INGRESS_RULE, "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"),
            "securityGroupId",
        )
        for prop in ("ingress", "egress")
    ),
    *(
        (
            ("aws:ec2/networkAcl:NetworkAcl", "aws:ec2/defaultNetworkAcl:DefaultNetworkAcl"),
            prop,
            ("aws:ec2/networkAclRule:NetworkAclRule",),
            "networkAclId",
        )
        for prop in ("ingress", "egress")
    ),
    (
        ("aws:ec2/natGateway:NatGateway",),
        "secondaryAllocationIds",
        ("aws:ec2/natGatewayEipAssociation:NatGatewayEipAssociation",),
        "natGatewayId",
    ),
    ((_ROLE,), "inlinePolicies", ("aws:iam/rolePolicy:RolePolicy",), "role"),
    ((_ROLE,), "managedPolicyArns", (_ATTACHMENT,), "role"),
    # iam.PolicyAttachment owns every attachment of its policy in the account (pulumi_aws/iam/
    # policy_attachment.py, "creates exclusive attachments"): matched by the policy, not the role.
    (
        ("aws:iam/policyAttachment:PolicyAttachment",),
        "policyArn",
        (
            _ATTACHMENT,
            "aws:iam/userPolicyAttachment:UserPolicyAttachment",
            "aws:iam/groupPolicyAttachment:GroupPolicyAttachment",
        ),
        "policyArn",
    ),
)


@stack_rule(
    RULES,
    id="CDAO-NET-011",
    name="Inline collection combined with standalone members on one resource",
    description=(
        "A route table's inline routes with aws.ec2.Route resources on the same table (likewise a security "
        "group's inline ingress/egress with rule resources, a network ACL's inline rules with NetworkAclRule, a "
        "NAT gateway's secondaryAllocationIds with NatGatewayEipAssociation, a role's inlinePolicies with "
        "RolePolicy or managedPolicyArns with RolePolicyAttachment). pulumi-aws documents each pair as not to be "
        "combined: the inline property is reconciled against everything the provider reads back, so refresh "
        "reports drift every time and an update of the owner deletes the standalone members. An inline property "
        "set to an empty list counts: it means 'manage and remove all'. A member whose owner is unknown at "
        "preview is reported as 'cannot verify'."
    ),
    remediation=(
        "Declare every member as a standalone resource and leave the inline property unset (omitted, not []), "
        "or declare them all inline."
    ),
    level="mandatory",
)
def net_011_inline_and_members(resources: list[Resource], _ctx: Context) -> Iterator[Finding]:
    for owner_types, prop, member_types, ref in _INLINE_VS_MEMBER:
        owners = [r for r in resources if r.type in owner_types and r.props.get(prop) is not None]
        if not owners:
            continue
        handles = [
            (owner, {owner.props[prop]} if prop == ref else identifiers(owner, "name", "arn")[0]) for owner in owners
        ]
        for member in (r for r in resources if r.type in member_types):
            target = member.props.get(ref)
            linked = set(member.deps.get(ref, ()))
            if isinstance(target, str):
                linked.add(target)
            hits = [owner for owner, ids in handles if ids & linked]
            for owner in hits:
                kind = member.type.rsplit(":", 1)[-1]
                yield Finding(
                    f"{owner.name} manages `{prop}` inline and {kind} {member.name} adds to the same collection",
                    owner,
                )
            # An unknown reference with a dependency names its owner through the dependency; only
            # one with neither could be on an inline-managed owner unseen.
            if not hits and isinstance(target, UnknownValue) and not member.deps.get(ref):
                yield Finding(f"cannot verify: {ref}", member, unknown=True)
