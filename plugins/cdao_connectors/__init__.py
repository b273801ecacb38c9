"""Flyte connectors for the CDAO platform (Codeweave, AWS Batch, EMR on EC2, SageMaker).

Importing this package registers nothing: the SDK imports the ``task`` modules in notebooks, where
registering connectors (and importing boto3) would be wasted work. The connector service imports
:mod:`cdao_connectors.service`, which registers every connector.
"""
