"""Helpers the components share: IAM policy documents (`iam`), the MLOps layers' policies and
prefixes (`mlops`), and building blocks several components declare the same way (`shared`)."""
