#!/usr/bin/env bash
# run_pair.sh: runs two programs that meet at an address (a server and a
# client), for examples made of two unrelated programs.
#
#   run_pair.sh SERVER CLIENT ADDRESS
#
# Starts `SERVER ADDRESS` in the background; `@TMPDIR@` in ADDRESS becomes a
# fresh temporary directory, and a tcp port 0 lets the server pick a free
# port, so parallel runs never collide. The server's first line of output
# must end with the address it actually serves; run_pair then runs
# `CLIENT THAT_ADDRESS`, waits for both, and prints the server's output,
# then the client's. Exits non-zero if either failed, or the server did not
# announce itself within 10 s or finish within 20 s after the client.
set -u
server=$1 client=$2 address=$3
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
address=${address//@TMPDIR@/$dir}

"$server" "$address" >"$dir/server.out" 2>"$dir/server.err" &
server_pid=$!

served=""
for _ in $(seq 100); do
  if [[ -s $dir/server.out ]]; then
    served=$(head -n 1 "$dir/server.out" | awk '{print $NF}')
    break
  fi
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
client_status=1
if [[ -n $served ]]; then
  "$client" "$served" >"$dir/client.out" 2>"$dir/client.err"
  client_status=$?
else
  echo "run_pair: the server did not say where it serves" >&2
  touch "$dir/client.out" "$dir/client.err"
fi

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
