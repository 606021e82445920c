#!/usr/bin/env bash
# run_pair.sh: runs two programs that meet at an address (a server and a
# client), for examples made of two unrelated programs.
#
#   run_pair.sh SERVER CLIENT ADDRESS
#
# Starts `SERVER ADDRESS` in the background, then runs `CLIENT ADDRESS`
# (which retries its connect until the server is up), waits for both and
# prints the server's output, then the client's. Exits non-zero if either
# failed or the server did not finish within 20 s of the client.
set -u
server=$1 client=$2 address=$3
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

"$server" "$address" >"$dir/server.out" 2>"$dir/server.err" &
server_pid=$!
"$client" "$address" >"$dir/client.out" 2>"$dir/client.err"
client_status=$?

for _ in $(seq 200); do
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$server_pid" 2>/dev/null; then
  kill "$server_pid"
  echo "run_pair: the server did not finish" >&2
fi
wait "$server_pid"
server_status=$?

cat "$dir/server.out" "$dir/client.out"
cat "$dir/server.err" "$dir/client.err" >&2
[[ $server_status -eq 0 && $client_status -eq 0 ]]
