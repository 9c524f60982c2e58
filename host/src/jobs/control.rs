//! What makes a job's training interruptible and resumable: how it may stop
//! ([`RunControl`]), its state kept in the job's staging folder after every epoch
//! ([`Kept`]), and the error that says what was kept and how to go on
//! ([`Interrupted`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::Device;
use candle_nn::VarMap;

use crate::data::Dataset;
use crate::output::Staged;
use crate::snn::Network;
use crate::train::resume::{self, ResumeError};
use crate::train::{self, Snapshot, TrainConfig, Trained};

use super::JobError;

/// How a job's training may be stopped and continued.
#[derive(Debug, Clone, Default)]
pub struct RunControl {
    /// The output folder holds an interrupted run of the same job: continue it from its
    /// training state (and replace it when done).
    pub resume: bool,
    /// Catch SIGINT and SIGTERM during training: stop after the current step and keep
    /// the state (outside training they end the process as usual).
    pub signals: bool,
    /// Stop as an interruption would once this many steps are taken in all (for tests
    /// and scripts).
    pub stop_after_steps: Option<usize>,
    /// The command line that started the job, recorded with the state so that
    /// `--resume` can run it again.
    pub command: Vec<String>,
}

/// Metadata key of the job description a training state belongs to.
const JOB_KEY: &str = "spikenas.job";
/// Metadata key of the recorded command line (a JSON list).
const COMMAND_KEY: &str = "spikenas.command";
/// Metadata key of the folder the command ran in.
const CWD_KEY: &str = "spikenas.cwd";

impl RunControl {
    /// The training state to continue from (when resuming), checked to belong to the
    /// job described by `fingerprint`.
    pub fn resume_state(
        &self,
        out: &Path,
        fingerprint: &str,
    ) -> Result<Option<Snapshot>, ResumeError> {
        if !self.resume {
            return Ok(None);
        }
        let path = out.join(resume::FILE);
        let (snapshot, meta) = Snapshot::read(&path)?;
        resume::same_job(&path, &meta, JOB_KEY, fingerprint)?;
        Ok(Some(snapshot))
    }
}

/// The command line and folder recorded with the interrupted run in `dir`.
pub fn recorded_command(dir: &Path) -> Result<(Vec<String>, PathBuf), ResumeError> {
    // A run that was killed (no chance to move its folder into place) left it staged.
    crate::output::recover(dir);
    let path = dir.join(resume::FILE);
    let (_, meta) = Snapshot::read(&path)?;
    let bad = |problem: &str| ResumeError::Format {
        path: path.clone(),
        problem: problem.into(),
    };
    let command: Vec<String> = meta
        .get(COMMAND_KEY)
        .and_then(|c| serde_json::from_str(c).ok())
        .filter(|c: &Vec<String>| c.len() >= 2)
        .ok_or_else(|| bad("it records no command line to continue"))?;
    let cwd = meta
        .get(CWD_KEY)
        .map(PathBuf::from)
        .ok_or_else(|| bad("it records no working folder"))?;
    Ok((command, cwd))
}

/// What identifies a training recipe for resuming (not whether a progress bar shows).
pub(crate) fn fingerprint_of(cfg: &TrainConfig) -> serde_json::Value {
    let mut v = serde_json::to_value(TrainConfig {
        progress: false,
        ..cfg.clone()
    })
    .expect("plain data serialises");
    v["conv"] = cfg.conv.to_string().into();
    v
}

/// A training whose state is kept in a staging folder.
pub(crate) struct Kept<'a> {
    /// Where the state goes (with the job's other output).
    pub staged: Staged,
    /// How it may stop.
    pub ctl: &'a RunControl,
    /// The job it belongs to.
    pub fingerprint: String,
    /// The command that continues it.
    pub resume_command: String,
    /// More metadata kept with the state (what the job did before training).
    pub extra_meta: BTreeMap<String, String>,
}

impl Kept<'_> {
    fn meta(&self) -> BTreeMap<String, String> {
        let cwd = std::env::current_dir().unwrap_or_default();
        let mut meta = self.extra_meta.clone();
        meta.extend([
            (JOB_KEY.to_string(), self.fingerprint.clone()),
            (
                COMMAND_KEY.to_string(),
                serde_json::to_string(&self.ctl.command).expect("strings serialise"),
            ),
            (CWD_KEY.to_string(), cwd.to_string_lossy().into_owned()),
        ]);
        meta
    }

    /// Trains, saving the state after every epoch; stops on a signal (with
    /// `ctl.signals`) or after `ctl.stop_after_steps`. A finished run leaves no state.
    pub fn train(
        &self,
        net: &Network,
        varmap: &VarMap,
        data: &Dataset,
        device: &Device,
        cfg: &TrainConfig,
        resume: Option<&Snapshot>,
    ) -> Result<Trained, JobError> {
        let _guard = if self.ctl.signals {
            Some(crate::interrupt::Guard::install().map_err(|source| {
                crate::output::OutputError::Io {
                    path: PathBuf::from("(signal handlers)"),
                    source,
                }
            })?)
        } else {
            None
        };
        let meta = self.meta();
        let state_path = self.staged.path(resume::FILE);
        let mut keep = |s: &Snapshot| Ok(s.save(&state_path, &meta)?);
        let limit = self.ctl.stop_after_steps;
        let stop = |steps: usize| {
            crate::interrupt::requested().is_some() || limit.is_some_and(|m| steps >= m)
        };
        let control = train::Control {
            resume,
            on_epoch: &mut keep,
            stop: &stop,
        };
        let trained = train::train_resumable(net, varmap, data, device, cfg, control)?;
        if matches!(trained, Trained::Finished(_)) {
            self.staged.remove(resume::FILE)?;
        }
        Ok(trained)
    }

    /// Saves the state `s`, moves the folder into place with what it holds (the state
    /// and the `others` files, named for the message), and says so.
    pub fn interrupted(
        self,
        s: &Snapshot,
        cfg: &TrainConfig,
        others: &[&str],
    ) -> Result<Interrupted, JobError> {
        s.save(&self.staged.path(resume::FILE), &self.meta())?;
        let dir = self.staged.target().to_path_buf();
        let signal = crate::interrupt::requested();
        let mut kept = format!("the training state ({})", resume::FILE);
        for o in others {
            kept.push_str(&format!(", {o}"));
        }
        let st = &s.state;
        let by = signal.map_or("on request".to_string(), |sig| {
            format!("by {}", crate::interrupt::name(sig))
        });
        self.staged.commit()?;
        Ok(Interrupted {
            what: format!(
                "training stopped {by} after step {} (epoch {} of {}, {} steps into it)",
                st.steps, st.epoch, cfg.epochs, st.epoch_step
            ),
            dir,
            kept,
            resume_command: self.resume_command.clone(),
            signal,
        })
    }
}

/// A job stopped before its end, with what was kept and how to go on.
#[derive(Debug, thiserror::Error)]
#[error(
    "{what}; kept in {}: {kept}. Continue with: {resume_command}",
    dir.display()
)]
pub struct Interrupted {
    /// What stopped where.
    pub what: String,
    /// The output folder that holds what was kept.
    pub dir: PathBuf,
    /// What it holds.
    pub kept: String,
    /// The command that continues the job.
    pub resume_command: String,
    /// The signal that stopped it (None: `stop_after_steps`).
    pub signal: Option<i32>,
}
