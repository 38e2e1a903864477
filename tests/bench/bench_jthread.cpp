/*
 * bench_jthread - the peer: C++20 std::jthread whose thread waits on a condition_variable_any
 * with its stop_token (one-hour timeout), against scoped_worker and raw pthreads, all measured
 * in the same run. Built with g++ -std=c++20 and linked with libscoped.a.
 *
 *   start+close    jthread: construct, destroy (request_stop + join); worker: start, close;
 *                  baseline: pthread_create + pthread_join of an empty thread.
 *   close latency  the thread idle in its one-hour wait; jthread: request_stop + join.
 *   memory         heap bytes per live handle (mallinfo2 deltas over many live handles).
 *
 * Medians of REPEATS interleaved runs (each the mean of a batch), or of every sample for
 * latencies.
 * BENCH_QUICK=1 in the environment: fewer cycles.
 */
#include <malloc.h>
#include <pthread.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <stop_token>
#include <thread>
#include <vector>

#include <scoped.h>

namespace {

constexpr int REPEATS = 21, LIVE = 200;
int batch = 200, samples = 1000;

double now_ns()
{
	timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return double(ts.tv_sec) * 1e9 + double(ts.tv_nsec);
}

double median(std::vector<double> v)
{
	std::sort(v.begin(), v.end());
	size_t n = v.size();
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void settle()
{
	timespec ts{0, 200000};
	nanosleep(&ts, nullptr);
}

/* The peer: the waiting state lives on the heap, as a worker's handle does. */
struct idle_jthread {
	struct state {
		std::mutex mu;
		std::condition_variable_any cv;
	};
	std::unique_ptr<state> s = std::make_unique<state>();
	std::jthread t;

	idle_jthread()
		: t([st = s.get()](std::stop_token stop) {
			  std::unique_lock lock(st->mu);
			  st->cv.wait_for(lock, stop, std::chrono::hours(1), [] { return false; });
		  })
	{
	}
	/* ~jthread requests stop and joins; the stop callback notifies cv. t is destroyed first. */
	~idle_jthread() { t = std::jthread(); }
};

void nothing(void *) {}

scoped_worker *start_hourly()
{
	scoped_worker_config cfg{};
	cfg.name = "bench";
	cfg.period_ms = 3600u * 1000u;
	cfg.tick = nothing;
	cfg.on_stop = nothing;
	scoped_worker *w = scoped_worker_start(&cfg);
	if (!w)
		std::abort();
	return w;
}

void *empty_thread(void *arg) { return arg; }

/* Interleaved: each repeat runs every subject once, so load from other processes falls on all
 * of them alike. Returns each subject's median. */
template <class... F> std::vector<double> run(F... cycle)
{
	auto once = [](auto &f) {
		double t0 = now_ns();
		for (int i = 0; i < batch; i++)
			f();
		return (now_ns() - t0) / batch;
	};
	(once(cycle), ...); /* warm up */
	std::vector<std::vector<double>> v(sizeof...(F));
	for (int i = 0; i < REPEATS; i++) {
		size_t k = 0;
		((v[k++].push_back(once(cycle))), ...);
	}
	std::vector<double> out;
	for (auto &x : v)
		out.push_back(median(x));
	return out;
}

/* One close, timed in microseconds, of a handle idle in its one-hour wait. */
template <class Start, class Close> double close_us(Start start, Close close)
{
	auto h = start();
	settle();
	double t0 = now_ns();
	close(h);
	return (now_ns() - t0) / 1000;
}

size_t heap_in_use() { return mallinfo2().uordblks; }

} // namespace

int main()
{
	if (std::getenv("BENCH_QUICK")) {
		batch = 20;
		samples = 30;
	}
	std::printf("bench_jthread: medians of %d runs x %d cycles; latency: median of %d closes\n",
		    REPEATS, batch, samples);

	auto m = run(
		[] {
			pthread_t t;
			if (pthread_create(&t, nullptr, empty_thread, nullptr) != 0)
				std::abort();
			pthread_join(t, nullptr);
		},
		[] { idle_jthread j; }, [] { scoped_worker_close(start_hourly()); });
	double base = m[0], jt = m[1], wk = m[2];
	std::printf("start+close, per cycle:\n");
	std::printf("  pthread_create+join, empty thread    %7.1f us   1.00x (baseline)\n", base / 1e3);
	std::printf("  std::jthread + cv_any(stop_token)    %7.1f us   %4.2fx\n", jt / 1e3, jt / base);
	std::printf("  scoped_worker (period 1 h)           %7.1f us   %4.2fx   %4.2fx of jthread\n",
		    wk / 1e3, wk / base, wk / jt);

	std::vector<double> vjt, vwk; /* samples alternate between the two */
	for (int i = 0; i < samples; i++) {
		vjt.push_back(close_us([] { return new idle_jthread; }, [](idle_jthread *j) { delete j; }));
		vwk.push_back(close_us(start_hourly, scoped_worker_close));
	}
	double ljt = median(vjt), lwk = median(vwk);
	std::printf("close latency, thread idle in a one-hour wait (median):\n");
	std::printf("  std::jthread request_stop + join     %7.1f us\n", ljt);
	std::printf("  scoped_worker_close                  %7.1f us   %4.2fx of jthread\n", lwk,
		    lwk / ljt);

	std::vector<idle_jthread *> js;
	size_t h0 = heap_in_use();
	for (int i = 0; i < LIVE; i++)
		js.push_back(new idle_jthread);
	size_t h1 = heap_in_use();
	for (auto *j : js)
		delete j;
	std::vector<scoped_worker *> ws;
	ws.reserve(LIVE);
	size_t w0 = heap_in_use();
	for (int i = 0; i < LIVE; i++)
		ws.push_back(start_hourly());
	size_t w1 = heap_in_use();
	for (auto *w : ws)
		scoped_worker_close(w);
	std::printf("memory, heap per live handle (%d live; stacks excluded; includes glibc's own):\n",
		    LIVE);
	std::printf("  std::jthread + state                 %7.0f B\n", double(h1 - h0) / LIVE);
	std::printf("  scoped_worker                        %7.0f B\n", double(w1 - w0) / LIVE);
	return 0;
}
