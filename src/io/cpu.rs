//! Which CPUs the workers run on, with `--steer cpu`. When each worker can have CPUs of its
//! own (worker i the allowed CPUs whose number modulo the number of workers is i), packets are steered to the
//! worker of the CPU they arrive on (the TUN device's steering program, `ebpf/steering.c`,
//! and the uplinks' fanout by CPU): waking that worker then never needs another CPU woken,
//! which on a virtual machine costs tens of microseconds per packet that finds it asleep.

use std::io;

use super::fd::check;

/// The CPUs this process may run on (its affinity mask: taskset, systemd's CPUAffinity).
pub fn allowed() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain old data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` lives on our stack and its size is passed; 0 is the calling thread.
    check(unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) })?;
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: CPU_ISSET reads the set, and `cpu` is below CPU_SETSIZE.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Each worker's CPUs (worker i: the allowed CPUs c with c % workers == i), or `None` if some
/// worker would have none (more workers than CPUs).
pub fn per_worker(allowed: &[usize], workers: usize) -> Option<Vec<Vec<usize>>> {
    let sets: Vec<Vec<usize>> = (0..workers)
        .map(|i| {
            allowed
                .iter()
                .copied()
                .filter(|c| c % workers == i)
                .collect()
        })
        .collect();
    sets.iter().all(|s| !s.is_empty()).then_some(sets)
}

/// Runs the calling thread on `cpus` only.
pub fn pin_current_thread(cpus: &[usize]) -> io::Result<()> {
    // SAFETY: as in `allowed`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
        // SAFETY: CPU_SET writes within the set: `cpu` is below CPU_SETSIZE.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: `set` lives on our stack and its size is passed; 0 is the calling thread.
    check(unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_worker_gets_the_cpus_of_its_number() {
        assert_eq!(per_worker(&[0, 1], 2), Some(vec![vec![0], vec![1]]));
        assert_eq!(
            per_worker(&[0, 1, 2, 3], 2),
            Some(vec![vec![0, 2], vec![1, 3]])
        );
        assert_eq!(per_worker(&[0, 1, 2, 3], 1), Some(vec![vec![0, 1, 2, 3]]));
        // a worker without a CPU of its own: no pinning at all
        assert_eq!(per_worker(&[0, 1], 3), None);
        assert_eq!(per_worker(&[2, 4], 2), None);
    }

    #[test]
    fn this_thread_can_be_pinned_and_let_go() {
        let all = allowed().expect("affinity");
        assert!(!all.is_empty());
        std::thread::spawn(move || {
            pin_current_thread(&all[..1]).expect("pin");
            assert_eq!(allowed().expect("affinity"), all[..1]);
            pin_current_thread(&all).expect("unpin");
            assert_eq!(allowed().expect("affinity"), all);
        })
        .join()
        .expect("thread");
    }
}
