"""`storyloop console`: try Storyloop without Slack.

The real app, pipeline, worker and Redis run as in production; a small local Web API server
(``slackapi.py``) stands in for Slack and prints what the app posts as readable text
(``render.py``), and the terminal (``repl.py``) turns typed lines into the signed requests
Slack would send. Nothing here is used by ``storyloop run``.
"""
