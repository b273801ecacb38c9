"""Module the connector service loads: ``pyflyte serve connector --modules cdao_connectors.service``.

The SageMaker and EMR Serverless connectors register themselves through flytekit's plugin entry
points as soon as flytekit is imported; these imports add the connectors written here and replace
the EMR Serverless one with its idempotent subclass.
"""

from cdao_connectors.aws_batch import connector as aws_batch_connector
from cdao_connectors.codeweave import connector as codeweave_connector
from cdao_connectors.emr import connector as emr_connector
from cdao_connectors.emr import serverless as emr_serverless_connector
from cdao_connectors.sagemaker import connector as sagemaker_connector

__all__ = [
    "aws_batch_connector",
    "codeweave_connector",
    "emr_connector",
    "emr_serverless_connector",
    "sagemaker_connector",
]
