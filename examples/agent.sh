#!/bin/sh
# A stand-in for an AI agent CLI, for the demo and for trying Errand out: it reads the task on
# standard input and "works" on it step by step, streaming its progress. Point agent.command in
# the host's config.toml at a real agent (and its arguments) to use one.
#   ERRAND_CONVERSATION  one id for the host's whole conversation (to resume a session)
#   ERRAND_TASK, ERRAND_DEVICE  this task and the device that sent it
task=$(cat)
echo "Agent: task from $ERRAND_DEVICE (conversation $ERRAND_CONVERSATION)"
echo "Agent: \"$task\""
for step in "reading the request" "looking at the files" "doing the work" "checking the result"; do
  sleep 0.3
  echo "Agent: $step…"
done
echo "Agent: done."
