"""Names of the flows, their deployments and the events that start them: declared once, used by the deployments
(flows/deploy.py), the skip rule (run_key.decide_skip), the event senders (flows/events.py) and the service health
check (serve.py)."""

FLOW_NAME = "retrain"
SCHEDULED_DEPLOYMENT = "scheduled"
MANUAL_DEPLOYMENT = "manual"
MONITOR_FLOW = "monitor"
MONITOR_DEPLOYMENT = "on-new-data"  # started by DATA_ADDED_EVENT and INBOX_EVENT (a deployment trigger)
DEPLOYMENTS = (
    f"{FLOW_NAME}/{SCHEDULED_DEPLOYMENT}",
    f"{FLOW_NAME}/{MANUAL_DEPLOYMENT}",
    f"{MONITOR_FLOW}/{MONITOR_DEPLOYMENT}",
)
# Prefect events; their payload's `path` is the drop to judge. Resource ids: textclf.data.<md5>, textclf.inbox.<name>.
DATA_ADDED_EVENT = "textclf.data.added"  # `textclf data add` created a data version
INBOX_EVENT = "textclf.inbox.file"  # a drop file landed (and stopped growing) in data.inbox
DROP_EVENTS = (DATA_ADDED_EVENT, INBOX_EVENT)
