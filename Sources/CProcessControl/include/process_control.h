#ifndef ERRAND_PROCESS_CONTROL_H
#define ERRAND_PROCESS_CONTROL_H

#include <spawn.h>

/// Makes the calling process the reaper of its orphaned descendants (Linux's
/// PR_SET_CHILD_SUBREAPER): a task's child that detaches (`cmd &`, `setsid`) is re-parented to
/// this process instead of init, so it can be found and ended. Returns 0, or -1 with errno set
/// (ENOSYS where the system has no such call).
int errand_become_subreaper(void);

/// Adds "close every descriptor from `lowest` up" to a spawn's file actions (glibc 2.34+'s
/// posix_spawn_file_actions_addclosefrom_np, which needs _GNU_SOURCE). Returns 0, or an error
/// number (ENOSYS where the system has no such action).
int errand_spawn_close_from(posix_spawn_file_actions_t *actions, int lowest);

/// The user id of the process at the other end of a connected Unix socket (SO_PEERCRED on
/// Linux, getpeereid elsewhere). Returns 0, or -1 with errno set.
int errand_peer_uid(int socket, unsigned int *uid);

#endif
