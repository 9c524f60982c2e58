//! Tests of staged output folders: nothing lost, nothing left half-written.

use super::*;

/// A fresh, empty scratch folder for one test.
fn scratch(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("spikenas-output-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&p);
    fs::create_dir_all(&p).unwrap();
    p
}

/// Names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A folder written through [`Staged`] holding `name` = `text`.
fn written(target: &Path, name: &str, text: &str) {
    let s = Staged::new(target, true).unwrap();
    s.write(name, text.as_bytes()).unwrap();
    s.commit().unwrap();
}

#[test]
fn refuses_existing_without_force_and_replaces_with_force() {
    let root = scratch("force");
    let dir = root.join("out");
    let s = Staged::new(&dir, false).unwrap();
    s.write("a.txt", b"one").unwrap();
    s.commit().unwrap();
    assert!(is_spikenas_output(&dir), "the marker is written");
    let err = Staged::new(&dir, false).unwrap_err();
    assert!(matches!(err, OutputError::Exists(_)), "{err}");
    assert!(err.to_string().contains("--force"), "{err}");
    let s = Staged::new(&dir, true).unwrap();
    s.write("b.txt", b"two").unwrap();
    // Until commit, the old result is untouched.
    assert_eq!(fs::read(dir.join("a.txt")).unwrap(), b"one");
    s.commit().unwrap();
    assert!(!dir.join("a.txt").exists());
    assert_eq!(fs::read(dir.join("b.txt")).unwrap(), b"two");
    assert!(is_spikenas_output(&dir));
    // Nothing is left beside it: no staging folder, no old folder.
    assert_eq!(listing(&root), ["out"]);
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn dropped_stage_leaves_nothing_and_keeps_the_old_result() {
    let root = scratch("drop");
    let fresh = root.join("fresh");
    {
        let s = Staged::new(&fresh, false).unwrap();
        s.write("x", b"1").unwrap();
    }
    assert!(!fresh.exists());
    let old = root.join("old");
    written(&old, "keep.txt", "old result");
    {
        // A run that fails half-way (dropped without commit).
        let s = Staged::new(&old, true).unwrap();
        s.write("half.txt", b"half").unwrap();
    }
    assert_eq!(
        fs::read_to_string(old.join("keep.txt")).unwrap(),
        "old result"
    );
    assert!(!old.join("half.txt").exists());
    assert_eq!(listing(&root), ["old"]);
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn the_current_folder_its_parents_home_and_root_are_never_replaced() {
    // The test runs in the package folder (host/): every path below names it, a parent
    // of it, the home folder or `/`. Only `Staged::new` is called: it must refuse
    // before anything is created, and it never deletes.
    let cwd = std::env::current_dir().unwrap();
    let mut paths: Vec<PathBuf> = [".", "./", "..", "../", "/", "src/..", "src/../."]
        .iter()
        .map(PathBuf::from)
        .collect();
    paths.push(cwd.clone());
    paths.push(cwd.join("."));
    if let Some(home) = std::env::var_os("HOME") {
        paths.push(PathBuf::from(home));
    }
    let before = listing(&cwd);
    for path in paths {
        for force in [true, false] {
            let err = Staged::new(&path, force).unwrap_err();
            assert!(
                matches!(err, OutputError::Protected { .. }),
                "{} (force {force}): {err}",
                path.display()
            );
            let text = err.to_string();
            assert!(
                text.contains("never replaces") && text.contains("Fix:"),
                "{text}"
            );
        }
    }
    assert_eq!(
        listing(&cwd),
        before,
        "nothing was created in the current folder"
    );
    let err = Staged::new(Path::new("."), true).unwrap_err().to_string();
    assert!(err.contains("the current folder"), "{err}");
    let err = Staged::new(Path::new(".."), true).unwrap_err().to_string();
    assert!(err.contains("a parent of the current folder"), "{err}");
    let err = Staged::new(Path::new("/"), true).unwrap_err().to_string();
    assert!(
        err.contains("the root folder") || err.contains("a parent of the current folder"),
        "{err}"
    );
}

#[test]
fn a_folder_spikenas_did_not_write_is_never_replaced() {
    let root = scratch("unmarked");
    let mine = root.join("photos");
    fs::create_dir_all(&mine).unwrap();
    fs::write(mine.join("holiday.jpg"), b"precious").unwrap();
    for force in [true, false] {
        let err = Staged::new(&mine, force).unwrap_err();
        assert!(matches!(err, OutputError::NotOurs(_)), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&mine.display().to_string()) && text.contains(MARKER),
            "{text}"
        );
    }
    // Also through `DIR/.`.
    let err = Staged::new(&mine.join("."), true).unwrap_err();
    assert!(matches!(err, OutputError::NotOurs(_)), "{err}");
    assert_eq!(
        fs::read(mine.join("holiday.jpg")).unwrap(),
        b"precious".to_vec()
    );
    assert_eq!(listing(&root), ["photos"]);
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_marked_folder_may_be_named_with_a_trailing_dot() {
    let root = scratch("dot");
    let out = root.join("out");
    written(&out, "a", "1");
    written(&out.join("."), "b", "2");
    assert_eq!(listing(&out), [MARKER, "b"]);
    assert_eq!(listing(&root), ["out"]);
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_file_or_a_link_is_refused_at_once_without_saying_directory() {
    let root = scratch("file");
    let file = root.join("notes.txt");
    fs::write(&file, b"mine").unwrap();
    for force in [true, false] {
        let err = Staged::new(&file, force).unwrap_err();
        assert!(
            matches!(err, OutputError::NotAFolder { kind: "file", .. }),
            "{err}"
        );
        let text = err.to_string();
        assert!(!text.contains("directory"), "{text}");
        assert!(text.contains("is an existing file"), "{text}");
    }
    assert_eq!(fs::read(&file).unwrap(), b"mine");
    #[cfg(unix)]
    {
        let real = root.join("real");
        written(&real, "a", "1");
        let link = root.join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = Staged::new(&link, true).unwrap_err();
        assert!(
            matches!(
                err,
                OutputError::NotAFolder {
                    kind: "symbolic link",
                    ..
                }
            ),
            "{err}"
        );
        assert!(real.join("a").exists());
    }
    fs::remove_dir_all(&root).unwrap();
}

/// A process id that belonged to a process that has exited.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn leftovers_of_dead_processes_are_cleaned_safely() {
    let root = scratch("stale");
    let dead = dead_pid();
    let marked = |path: &Path| {
        fs::create_dir_all(path).unwrap();
        fs::write(path.join(MARKER), MARKER_TEXT).unwrap();
        fs::write(path.join("data"), b"x").unwrap();
    };
    let stale = root.join(format!(".out.partial-{dead}-0"));
    marked(&stale);
    // Not marked: not ours to delete, whatever its name says.
    let foreign = root.join(format!(".out.partial-{dead}-1"));
    fs::create_dir_all(&foreign).unwrap();
    // Of a live process (this one): still being written.
    let live = root.join(format!(".out.partial-{}-999999", std::process::id()));
    marked(&live);
    // Of another target.
    let other = root.join(format!(".other.partial-{dead}-0"));
    marked(&other);
    // The old result of a process that died between its two renames: put back.
    let old = root.join(format!(".out.old-{dead}-2"));
    marked(&old);
    let s = Staged::new(&root.join("out"), false);
    let err = s.unwrap_err();
    assert!(matches!(err, OutputError::Exists(_)), "{err}");
    assert!(!stale.exists(), "stale staging folder removed");
    assert!(
        !old.exists() && root.join("out/data").exists(),
        "old folder restored"
    );
    assert!(foreign.exists() && live.exists() && other.exists());
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn the_training_state_of_a_killed_run_is_kept_not_cleaned() {
    let root = scratch("resumable");
    let dead = dead_pid();
    let killed = root.join(format!(".run.partial-{dead}-0"));
    fs::create_dir_all(&killed).unwrap();
    fs::write(killed.join(MARKER), MARKER_TEXT).unwrap();
    fs::write(killed.join(RESUMABLE), b"state").unwrap();
    let empty = root.join(format!(".run.partial-{dead}-1"));
    fs::create_dir_all(&empty).unwrap();
    fs::write(empty.join(MARKER), MARKER_TEXT).unwrap();
    // The next run for the target finds the killed run's work in place, and says how
    // to continue it.
    let err = Staged::new(&root.join("run"), false).unwrap_err();
    assert!(matches!(err, OutputError::Interrupted(_)), "{err}");
    assert!(err.to_string().contains("--resume"), "{err}");
    assert_eq!(
        fs::read(root.join("run").join(RESUMABLE)).unwrap(),
        b"state"
    );
    assert_eq!(listing(&root), ["run"], "the empty staging folder is gone");
    // With a result at the target, a killed run's state is left alone.
    fs::create_dir_all(&killed).unwrap();
    fs::write(killed.join(MARKER), MARKER_TEXT).unwrap();
    fs::write(killed.join(RESUMABLE), b"later").unwrap();
    drop(Staged::new(&root.join("run"), true).unwrap());
    assert!(killed.join(RESUMABLE).is_file());
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn write_atomic_refuses_a_folder() {
    let root = scratch("atomic");
    let err = write_atomic(&root, b"x").unwrap_err();
    assert!(matches!(err, OutputError::BadPath { .. }), "{err}");
    let file = root.join("space.json");
    write_atomic(&file, b"{}").unwrap();
    write_atomic(&file, b"[]").unwrap();
    assert_eq!(fs::read(&file).unwrap(), b"[]");
    assert_eq!(listing(&root), ["space.json"]);
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn an_output_folder_may_not_hold_its_own_input() {
    let root = scratch("inside");
    let model = root.join("q");
    written(&model, "model.safetensors", "weights");
    let err = refuse_if_inside(&model, &model.join("model.safetensors"), "the model").unwrap_err();
    assert!(matches!(err, OutputError::BadPath { .. }), "{err}");
    assert!(err.to_string().contains("the model"), "{err}");
    refuse_if_inside(&model.join("."), &model, "the model").unwrap_err();
    refuse_if_inside(&root.join("fw"), &model, "the model").unwrap();
    refuse_if_inside(&root.join("missing"), &root.join("also-missing"), "x").unwrap();
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_new_file_is_written_whole_and_replaces_only_a_file_with_force() {
    let root = scratch("newfile");
    let file = root.join("model.nir");
    let put = |force: bool, text: &'static str| {
        write_new_file_with(&file, force, |tmp| {
            assert_ne!(tmp, file.as_path(), "writes go to a temporary file");
            fs::write(tmp, text).map_err(io(tmp))
        })
    };
    put(false, "one").unwrap();
    let err = put(false, "two").unwrap_err();
    assert!(matches!(err, OutputError::FileExists(_)), "{err}");
    assert!(err.to_string().contains("--force"), "{err}");
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        "one",
        "kept without --force"
    );
    put(true, "two").unwrap();
    assert_eq!(fs::read_to_string(&file).unwrap(), "two");

    // A failed write leaves neither a partial file nor the temporary one.
    let failed: Result<(), OutputError> = write_new_file_with(&root.join("x.nir"), false, |tmp| {
        fs::write(tmp, "half").map_err(io(tmp))?;
        Err(OutputError::FileExists(tmp.to_path_buf()))
    });
    assert!(failed.is_err());
    assert_eq!(listing(&root), ["model.nir"]);

    // A folder or a symbolic link is never replaced, even with --force.
    let err = write_new_file_with(&root, true, |_| Ok::<(), OutputError>(())).unwrap_err();
    assert!(matches!(err, OutputError::BadPath { .. }), "{err}");
    #[cfg(unix)]
    {
        let link = root.join("link.nir");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let err = write_new_file_with(&link, true, |_| Ok::<(), OutputError>(())).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }
    fs::remove_dir_all(&root).unwrap();
}
