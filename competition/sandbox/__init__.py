"""Running participants' code submissions: unpacked safely, run in a bubblewrap sandbox under
limits (wall time, CPU, memory, processes, disk, log) and watched until nothing of them is
left. `entry_run.run_entry` is the one call the harness makes."""
