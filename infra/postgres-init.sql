-- The MLflow backend store lives beside Prefect's database on the same PostgreSQL (infra/compose.yaml).
CREATE DATABASE mlflow OWNER textclf;
