/*
 * pause: the pod sandbox (infra container) process for Skiff, in the manner
 * of upstream Kubernetes' build/pause/linux/pause.c.
 *
 * It holds the pod's namespaces open by doing nothing: it sleeps in pause()
 * forever, exits 0 on SIGTERM/SIGINT, and, as PID 1 of a shared PID
 * namespace, reaps any orphaned children on SIGCHLD.
 *
 * Build (done by build-images.py):  gcc -static -Os -o pause pause.c
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define VERSION "skiff-pause-3.10"

static void sigdown(int signo) {
	(void)signo;
	_exit(0);
}

static void sigreap(int signo) {
	(void)signo;
	int saved = errno;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	errno = saved;
}

int main(int argc, char **argv) {
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-v") == 0) {
			printf("pause.c %s\n", VERSION);
			return 0;
		}
	}

	if (getpid() != 1)
		/* Not an error: useful for testing, but the reaping is only meaningful as PID 1. */
		fprintf(stderr, "Warning: pause should be the first process\n");

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);

	sa.sa_handler = sigdown;
	if (sigaction(SIGINT, &sa, NULL) < 0)
		return 1;
	if (sigaction(SIGTERM, &sa, NULL) < 0)
		return 2;

	sa.sa_handler = sigreap;
	sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
	if (sigaction(SIGCHLD, &sa, NULL) < 0)
		return 3;

	for (;;)
		pause();

	fprintf(stderr, "Error: infinite loop terminated\n");
	return 42;
}
