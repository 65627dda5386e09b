//! The JNI layer: each export converts its arguments, calls plain Rust and converts the result.
//! Every entry catches panics; errors become Java exceptions (never two at once).
//! Java side: java/src/main/java/io/beamprometheus/NativeExporter.java.

use crate::config::Config;
use crate::delivery::{stats_names, Exporter};
use crate::intake::Intake;
use ::jni::objects::{GlobalRef, JByteArray, JClass, JValue};
use ::jni::sys::{jboolean, jint, jlong, jlongArray, jstring, JNI_FALSE, JNI_TRUE};
use ::jni::{JNIEnv, JavaVM};
use once_cell::sync::Lazy;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

enum Error {
    /// Bad options or a malformed buffer: IllegalArgumentException.
    Argument(String),
    /// A closed or unknown handle: IllegalStateException.
    State(String),
    /// The JVM itself failed us (e.g. out of memory); an exception is usually already pending.
    Jvm(::jni::errors::Error),
}

impl From<::jni::errors::Error> for Error {
    fn from(e: ::jni::errors::Error) -> Self {
        Error::Jvm(e)
    }
}

/// Opaque handles: a stale or forged handle finds nothing instead of dereferencing freed memory.
static EXPORTERS: Lazy<Mutex<HashMap<jlong, Arc<Intake>>>> = Lazy::new(Default::default);
static NEXT_HANDLE: AtomicI64 = AtomicI64::new(1);

fn exporter(handle: jlong) -> Result<Arc<Intake>, Error> {
    let map = EXPORTERS.lock().unwrap_or_else(|p| p.into_inner());
    map.get(&handle).cloned().ok_or_else(|| Error::State(format!("exporter {} is closed", handle)))
}

/// A handle this library gave out and has closed since (e.g. by the shutdown hook): export and
/// flush on it are ignored quietly, since MetricsPusher may push once more after JVM shutdown
/// began. A handle never given out still fails.
fn was_closed(handle: jlong) -> bool {
    handle > 0 && handle < NEXT_HANDLE.load(Ordering::Relaxed)
}

/// Runs `f`, turning an error or a panic into a Java exception and `default` as the result.
fn entry<'local, T>(env: &mut JNIEnv<'local>, default: T, f: impl FnOnce(&mut JNIEnv<'local>) -> Result<T, Error>) -> T {
    let result = catch_unwind(AssertUnwindSafe(|| f(env)));
    let (class, msg) = match result {
        Ok(Ok(v)) => return v,
        Ok(Err(Error::Argument(m))) => ("java/lang/IllegalArgumentException", m),
        Ok(Err(Error::State(m))) => ("java/lang/IllegalStateException", m),
        Ok(Err(Error::Jvm(e))) => ("java/lang/IllegalStateException", format!("JNI call failed: {}", e)),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            ("java/lang/IllegalStateException", format!("beam-prometheus native error: {}", what))
        }
    };
    if !env.exception_check().unwrap_or(true) {
        let _ = env.throw_new(class, msg);
    }
    default
}

#[no_mangle]
pub extern "system" fn Java_io_beamprometheus_NativeExporter_init(mut env: JNIEnv, class: JClass, level: jint) {
    entry(&mut env, (), |env| {
        // Every class loader that loads the library calls init: the newest one's class gets the
        // records, and the previous one's global reference is dropped, so a finished job's class
        // loader is not pinned by the library (at most the newest one is).
        let logger = JavaLogger { vm: env.get_java_vm()?, class: env.new_global_ref(class)? };
        let previous = LOGGER.write().unwrap_or_else(|p| p.into_inner()).replace(logger);
        drop(previous);
        let _ = log::set_logger(&FORWARD);
        log::set_max_level(match level {
            i32::MIN..=0 => log::LevelFilter::Off,
            1 => log::LevelFilter::Error,
            2 => log::LevelFilter::Warn,
            3 => log::LevelFilter::Info,
            4 => log::LevelFilter::Debug,
            _ => log::LevelFilter::Trace,
        });
        Ok(())
    })
}

#[no_mangle]
pub extern "system" fn Java_io_beamprometheus_NativeExporter_create(mut env: JNIEnv, _class: JClass, options: JByteArray) -> jlong {
    entry(&mut env, 0, |env| {
        let bytes = env.convert_byte_array(&options)?;
        let cfg = Config::from_bytes(&bytes).map_err(|e| Error::Argument(e.to_string()))?;
        // Its errors are options that only fail when used (an unreadable CA or key file, …).
        // Snapshots are mapped on the exporter's own thread: writeMetrics only hands them over.
        let exporter = Intake::new(Exporter::new(cfg).map_err(Error::Argument)?).map_err(Error::Argument)?;
        let handle = NEXT_HANDLE.fetch_add(1, Ordering::Relaxed);
        EXPORTERS.lock().unwrap_or_else(|p| p.into_inner()).insert(handle, Arc::new(exporter));
        Ok(handle)
    })
}

#[no_mangle]
pub extern "system" fn Java_io_beamprometheus_NativeExporter_export(mut env: JNIEnv, _class: JClass, handle: jlong, pipeline: jlong, snapshot: JByteArray) {
    entry(&mut env, (), |env| {
        let exporter = match exporter(handle) {
            Err(Error::State(_)) if was_closed(handle) => {
                log::debug!("metrics exported after exporter {} was closed are ignored", handle);
                return Ok(());
            }
            e => e?,
        };
        let bytes = env.convert_byte_array(&snapshot)?;
        exporter.submit(pipeline, bytes).map_err(|e| Error::Argument(e.to_string()))
    })
}

#[no_mangle]
pub extern "system" fn Java_io_beamprometheus_NativeExporter_flush(mut env: JNIEnv, _class: JClass, handle: jlong, timeout_ms: jlong) -> jboolean {
    entry(&mut env, JNI_FALSE, |_| {
        let done = match exporter(handle) {
            // Closed: nothing of it is queued any more.
            Err(Error::State(_)) if was_closed(handle) => true,
            e => e?.flush(Duration::from_millis(timeout_ms.max(0) as u64)),
        };
        Ok(if done { JNI_TRUE } else { JNI_FALSE })
    })
}

#[no_mangle]
pub extern "system" fn Java_io_beamprometheus_NativeExporter_close(mut env: JNIEnv, _class: JClass, handle: jlong, timeout_ms: jlong) -> jboolean {
    entry(&mut env, JNI_FALSE, |_| {
        let removed = EXPORTERS.lock().unwrap_or_else(|p| p.into_inner()).remove(&handle);
        let done = match removed {
            Some(e) => e.close(Duration::from_millis(timeout_ms.max(0) as u64)),
            None => true,
        };
        Ok(if done { JNI_TRUE } else { JNI_FALSE })
    })
}

#[no_mangle]
pub extern "system" fn Java_io_beamprometheus_NativeExporter_stats(mut env: JNIEnv, _class: JClass, handle: jlong) -> jlongArray {
    entry(&mut env, std::ptr::null_mut(), |env| {
        let values = exporter(handle)?.stats().values();
        let arr = env.new_long_array(values.len() as i32)?;
        env.set_long_array_region(&arr, 0, &values)?;
        Ok(arr.into_raw())
    })
}

#[no_mangle]
pub extern "system" fn Java_io_beamprometheus_NativeExporter_lastError(mut env: JNIEnv, _class: JClass, handle: jlong) -> jstring {
    entry(&mut env, std::ptr::null_mut(), |env| match exporter(handle)?.last_error() {
        Some(e) => Ok(env.new_string(e)?.into_raw()),
        None => Ok(std::ptr::null_mut()),
    })
}

#[no_mangle]
pub extern "system" fn Java_io_beamprometheus_NativeExporter_statNames(mut env: JNIEnv, _class: JClass) -> jstring {
    entry(&mut env, std::ptr::null_mut(), |env| Ok(env.new_string(stats_names().join(","))?.into_raw()))
}

/// Forwards Rust `log` records to `NativeExporter.log(int, String, String)`, which hands them to
/// SLF4J. Delivery threads attach as daemons so they never keep the JVM alive.
struct JavaLogger {
    vm: JavaVM,
    class: GlobalRef,
}

/// The class of the newest class loader that called init (see there); None before the first.
static LOGGER: RwLock<Option<JavaLogger>> = RwLock::new(None);

/// The `log` crate's logger is set once per process; it forwards to whoever `LOGGER` holds.
struct Forward;
static FORWARD: Forward = Forward;

impl log::Log for Forward {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        JavaLogger::wanted(metadata)
    }

    fn log(&self, record: &log::Record) {
        if let Some(l) = LOGGER.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            l.log(record);
        }
    }

    fn flush(&self) {}
}

impl JavaLogger {
    fn wanted(metadata: &log::Metadata) -> bool {
        // Other crates' (reqwest, rustls, hyper) chatter only from warnings up.
        metadata.level() <= log::max_level()
            && (metadata.target().starts_with("beam_prometheus") || metadata.level() <= log::Level::Warn)
    }

    fn log(&self, record: &log::Record) {
        if !Self::wanted(record.metadata()) {
            return;
        }
        let _ = catch_unwind(AssertUnwindSafe(|| {
            let Ok(mut env) = self.vm.attach_current_thread_as_daemon() else { return };
            // A local frame frees the strings even on threads that stay attached for good.
            let _ = env.with_local_frame(4, |env| -> Result<(), ::jni::errors::Error> {
                let msg = env.new_string(record.args().to_string())?;
                let target = env.new_string(record.target())?;
                let class: &JClass = self.class.as_obj().into();
                let level = record.level() as i32;
                let r = env.call_static_method(
                    class,
                    "log",
                    "(ILjava/lang/String;Ljava/lang/String;)V",
                    &[JValue::Int(level), JValue::Object(&target), JValue::Object(&msg)],
                );
                if r.is_err() && env.exception_check().unwrap_or(false) {
                    let _ = env.exception_clear();
                }
                Ok(())
            });
        }));
    }
}
