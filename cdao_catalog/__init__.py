"""Facts AWS publishes that the Pulumi program, the cost estimate and the policy pack read: EKS's Kubernetes
support calendar (eks_versions), the EC2 instance types node pools may use (instances) and the
RDS instance classes (rds).

A leaf: it imports nothing from this repository, so infra/ (config validation) and cdao_cost/
(pricing), which must not import each other, share one owner of each fact.
"""
