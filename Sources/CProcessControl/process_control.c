// prctl is variadic, which Swift cannot call, and posix_spawn_file_actions_addclosefrom_np
// needs _GNU_SOURCE: this shim calls both with fixed arguments.
#define _GNU_SOURCE
#include "process_control.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/prctl.h>
#endif

int errand_become_subreaper(void) {
#if defined(__linux__)
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
#else
    errno = ENOSYS;
    return -1;
#endif
}

int errand_spawn_close_from(posix_spawn_file_actions_t *actions, int lowest) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    return posix_spawn_file_actions_addclosefrom_np(actions, lowest);
#else
    (void)actions; (void)lowest;
    return ENOSYS;
#endif
}

int errand_peer_uid(int socket, unsigned int *uid) {
#if defined(__linux__)
    struct ucred credentials;
    socklen_t size = sizeof credentials;
    if (getsockopt(socket, SOL_SOCKET, SO_PEERCRED, &credentials, &size) != 0) return -1;
    *uid = credentials.uid;
    return 0;
#else
    uid_t peer;
    gid_t group;
    if (getpeereid(socket, &peer, &group) != 0) return -1;
    *uid = peer;
    return 0;
#endif
}
