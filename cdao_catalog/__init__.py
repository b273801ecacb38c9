"""Facts AWS publishes that both the Pulumi program and the cost estimate read: EKS's Kubernetes
support calendar (eks_versions) and the EC2 instance types node pools may use (instances).

A leaf: it imports nothing from this repository, so infra/ (config validation) and cdao_cost/
(pricing), which must not import each other, share one owner of each fact.
"""
