//! `tserve-archiver`: torch-model-archiver's command line, writing archives both tserve and
//! TorchServe load. Errors print `ERROR - <message>` and exit 1; bad arguments exit 2.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::archive::{pack, ArchiveFormat, PackOptions, Runtime};

#[derive(Debug, Parser)]
#[command(
    name = "tserve-archiver",
    about = "Model archiver: writes .mar archives (torch-model-archiver's flags)",
    disable_version_flag = true
)]
pub struct ArchiverArgs {
    /// Exported model name; the archive is named <model-name>.mar.
    #[arg(long = "model-name", required = true)]
    pub model_name: String,
    /// Path to the .pt file: TorchScript for tserve (a state_dict needs --model-file).
    #[arg(long = "serialized-file")]
    pub serialized_file: Option<PathBuf>,
    /// Path to the Python file with the model class (eager mode; tserve serves TorchScript).
    #[arg(long = "model-file")]
    pub model_file: Option<PathBuf>,
    /// A built-in handler name (image_classifier, base_handler, ...) or a handler file.
    #[arg(long, required = true)]
    pub handler: String,
    /// Comma-separated extra files, folders (their contents) or glob patterns.
    #[arg(long = "extra-files")]
    pub extra_files: Option<String>,
    /// The runtime recorded in the manifest.
    #[arg(long, value_enum, default_value_t = Runtime::Python)]
    pub runtime: Runtime,
    /// Folder the archive is written to (must exist); the current folder by default.
    #[arg(long = "export-path")]
    pub export_path: Option<PathBuf>,
    /// default (.mar, deflated), zip-store (.mar, stored), tgz (.tar.gz), no-archive (a folder).
    #[arg(long = "archive-format", value_enum, default_value_t = ArchiveFormat::Default)]
    pub archive_format: ArchiveFormat,
    /// Overwrite an existing archive of the same name.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// The model's version.
    #[arg(short = 'v', long = "version", required = true)]
    pub version: String,
    /// A requirements.txt with the model's Python dependencies.
    #[arg(short = 'r', long = "requirements-file")]
    pub requirements_file: Option<PathBuf>,
    /// A model-config YAML (minWorkers, batchSize, ...).
    #[arg(short = 'c', long = "config-file")]
    pub config_file: Option<PathBuf>,
}

pub fn run(args: ArchiverArgs) -> ExitCode {
    let options = PackOptions {
        model_name: args.model_name,
        version: args.version,
        serialized_file: args.serialized_file,
        model_file: args.model_file,
        handler: args.handler,
        extra_files: args.extra_files,
        runtime: args.runtime,
        export_path: args.export_path.unwrap_or_else(|| PathBuf::from(".")),
        format: args.archive_format,
        force: args.force,
        requirements_file: args.requirements_file,
        config_file: args.config_file,
    };
    match pack(&options) {
        Ok(report) => {
            for warning in report.warnings {
                eprintln!("WARNING - {warning}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ERROR - {e}");
            ExitCode::FAILURE
        }
    }
}
