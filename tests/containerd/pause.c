/* The sandbox's first process for the containerd tests: it holds the pod's namespaces
 * and does nothing else. Built static so the image needs no libc; exits on SIGTERM and
 * SIGINT, which StopPodSandbox sends (a process that ignores them costs the stop
 * timeout before SIGKILL). */
#include <signal.h>
#include <unistd.h>

static void leave(int signal) {
    (void)signal;
    _exit(0);
}

int main(void) {
    signal(SIGTERM, leave);
    signal(SIGINT, leave);
    for (;;)
        pause();
}
