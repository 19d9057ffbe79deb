//! One copy of a TorchScript module per model file and device: the workers of a model version
//! share its weights instead of each loading its own (TorchServe keeps one copy per worker).
//!
//! Sharing is safe because a loaded module is only ever read: `forward` on a TorchScript module
//! may run on several threads at once (libtorch's graph executor guards its own caches), the
//! module is put in eval mode once, before anyone else can see it, and every worker runs with
//! autograd off. The copy goes when its last worker does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use tch::{CModule, Device};

type Slot = Arc<Mutex<Weak<CModule>>>;

/// Modules in use, by file and device. Each slot has a lock of its own, held while its module
/// loads, so workers starting together wait for the first load instead of loading a second copy,
/// and loads of other models are not held up.
fn slots() -> &'static Mutex<HashMap<(PathBuf, Device), Slot>> {
    static SLOTS: OnceLock<Mutex<HashMap<(PathBuf, Device), Slot>>> = OnceLock::new();
    SLOTS.get_or_init(Mutex::default)
}

/// The module loaded from `file` onto `device`: the copy another worker already holds, or a
/// fresh one from `load`. The flag says whether it is fresh.
pub fn module<E>(file: &Path, device: Device, load: impl FnOnce() -> Result<CModule, E>) -> Result<(Arc<CModule>, bool), E> {
    let slot = {
        let mut slots = slots().lock().unwrap_or_else(PoisonError::into_inner);
        // Forget the files no worker holds any more, so the map stays as small as what is served.
        // (A slot someone holds or is loading into stays.)
        slots.retain(|_, slot| Arc::strong_count(slot) > 1 || slot.try_lock().map_or(true, |module| module.strong_count() > 0));
        slots.entry((file.to_path_buf(), device)).or_default().clone()
    };
    let mut held = slot.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(module) = held.upgrade() {
        return Ok((module, false));
    }
    let module = Arc::new(load()?);
    *held = Arc::downgrade(&module);
    Ok((module, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(dir: &Path) -> PathBuf {
        // A module traced and saved by libtorch itself: no Python needed.
        let file = dir.join("m.pt");
        let module = tch::CModule::create_by_tracing(
            "m",
            "forward",
            &[tch::Tensor::from_slice(&[1.0f32])],
            &mut |inputs| vec![inputs[0].shallow_clone()],
        )
        .unwrap();
        module.save(&file).unwrap();
        file
    }

    #[test]
    fn workers_of_one_file_share_one_copy_until_the_last_goes() {
        let dir = tempfile::tempdir().unwrap();
        let file = identity(dir.path());
        let load = || CModule::load_on_device(&file, Device::Cpu);
        let (first, fresh) = module(&file, Device::Cpu, load).unwrap();
        assert!(fresh);
        let (second, fresh) = module(&file, Device::Cpu, load).unwrap();
        assert!(!fresh && Arc::ptr_eq(&first, &second), "the second worker shares the first's copy");
        drop((first, second));
        let (third, fresh) = module(&file, Device::Cpu, load).unwrap();
        assert!(fresh, "loaded again once nobody held it");
        drop(third);
        let err = module(&dir.path().join("missing.pt"), Device::Cpu, || CModule::load(dir.path().join("missing.pt")));
        assert!(err.is_err(), "a failed load is the caller's error, and nothing is kept");
    }
}
