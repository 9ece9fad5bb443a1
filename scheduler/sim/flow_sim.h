/* `chunkfly-sched-sim flow`: the mesh simulator (flow_sim.c). argv[0] is "flow". Returns the
 * process exit status: 0 every node got every piece, 1 the time limit passed first, 2 usage. */
#ifndef FLOW_SIM_H
#define FLOW_SIM_H

int flow_sim_main(int argc, char **argv);

#endif
