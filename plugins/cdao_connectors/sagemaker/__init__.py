"""SageMaker: flytekitplugins-awssagemaker's tasks and connectors, plus the two things it lacks."""
