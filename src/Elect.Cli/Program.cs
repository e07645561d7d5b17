using System.CommandLine;
using System.Diagnostics;
using System.Runtime.InteropServices;
using Elect;
using Elect.Cli;
using Elect.Datasets;
using Elect.Selection;
using Elect.Imaging;
using Elect.Modeling;
using Elect.Pipelines;
using Elect.Runner;
using Microsoft.Extensions.Logging;
using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Cli
{
    /// <summary>The <c>elect</c> command line: a thin layer over the Elect library.</summary>
    public static class ElectCli
    {
        public static int Main(string[] args) => Run(args, Console.Out, Console.Error);


        public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
        {
            var root = Build(stdout, stderr);
            var parsed = root.Parse(args);
            if (parsed.Errors.Count > 0)
            {
                stderr.WriteLine($"elect: error: {OneLine(parsed.Errors[0].Message)} (see 'elect --help')");
                return 2;
            }
            return parsed.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
        }

        private static RootCommand Build(TextWriter stdout, TextWriter stderr)
        {
            var root = new RootCommand("elect: instruction-guided image editing with zero-shot seed selection (ELECT)");

            var single = new Command("run-single", "Edit one image");
            var common = new CliOptions();
            var input = new Option<string>("--input") { Description = "Input image", Required = true };
            var instruction = new Option<string>("--instruction") { Description = "Editing instruction", Required = true };
            single.Add(input);
            single.Add(instruction);
            common.AddTo(single);
            single.Add(common.MaskImage);
            single.Add(common.KnownMask);
            single.SetAction(p => Guard(stderr, p.GetValue(common.LogLevel)!, log => RunSingle(p, common, input, instruction, stdout, stderr, log)));
            root.Add(single);

            var dataset = new Command("run-dataset", "Edit every item of a dataset (PIE-Bench mapping_file.json or a generic dataset.json)");
            var dcommon = new CliOptions();
            var datasetDir = new Option<string>("--dataset-dir") { Description = "Dataset folder", DefaultValueFactory = _ => "./datasets/PIE-bench" };
            var noResume = new Option<bool>("--no-resume") { Description = "Redo items that already have a report" };
            var limit = new Option<int?>("--limit") { Description = "Process at most this many items (>= 0)" };
            var force = new Option<bool>("--force") { Description = "Resume into an output folder whose run_manifest.json records other settings (mixes results)" };
            var turns = new Option<string>("--magicbrush-turns") { Description = "Published MagicBrush test set: independent (every turn from its ground-truth input: {id}_1, {id}_inde_{t}; MagicBrush's all-turn setting) or iterative (turn t from the model's own output of turn t-1: {id}_1, {id}_iter_{t}; its final-turn setting)", DefaultValueFactory = _ => "independent" };
            dataset.Add(datasetDir);
            dataset.Add(turns);
            dataset.Add(noResume);
            dataset.Add(limit);
            dataset.Add(force);
            dcommon.AddTo(dataset);
            dataset.Add(dcommon.UseDatasetMask);
            dataset.SetAction(p => Guard(stderr, p.GetValue(dcommon.LogLevel)!, log => RunDataset(p, dcommon, datasetDir, noResume, limit, force, turns, stderr, log)));
            root.Add(dataset);

            var sample = new Command("sample-image", "Write the project's synthetic sample image");
            var sampleOut = new Option<string>("--output") { Description = "PNG to write", DefaultValueFactory = _ => "images/sample.png" };
            var sampleSize = new Option<int>("--size") { Description = "Width and height", DefaultValueFactory = _ => 256 };
            sample.Add(sampleOut);
            sample.Add(sampleSize);
            sample.SetAction(p => Guard(stderr, "warning", _ =>
            {
                int size = p.GetValue(sampleSize);
                if (size < 8 || size > 4096) throw new ArgumentException($"--size must be between 8 and 4096, got {size}");
                var path = p.GetValue(sampleOut)!;
                var dir = Path.GetDirectoryName(Path.GetFullPath(path));
                if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
                SampleImage.Create(size, size).SavePng(path);
                stdout.WriteLine(path);
                return 0;
            }));
            root.Add(sample);

            root.Add(BenchCommand.Build(stdout, stderr));
            root.Add(DownloadCommand.Build(stdout, stderr));
            root.Add(EvaluateCommand.Build(stdout, stderr));
            return root;
        }

        /// <summary>Runs an action with a logger; any failure becomes a one-line error and exit code 1.</summary>
        internal static int Guard(TextWriter stderr, string logLevel, Func<ILogger, int> action)
        {
            LogLevel level;
            if (!Enum.TryParse(logLevel, ignoreCase: true, out level))
            {
                stderr.WriteLine($"elect: error: unknown --log-level '{logLevel}' (trace, debug, information, warning, error)");
                return 2;
            }
            using var factory = LoggerFactory.Create(b => b
                .AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss "; })
                .AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace)
                .SetMinimumLevel(level));
            var log = factory.CreateLogger("elect");
            try
            {
                return action(log);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                stderr.WriteLine($"elect: error: {FirstLine(ErrorText(e))}");
                if (level <= LogLevel.Debug) stderr.WriteLine(e.ToString());
                return 1;
            }
        }

        /// <summary>An exception's message without .NET's " (Parameter 'x')" suffix, the library's names mapped to the flags.</summary>
        internal static string ErrorText(Exception e)
        {
            if (e is TypeInitializationException { InnerException: { } inner }) e = inner;
            var message = e.Message;
            if (e is ArgumentException { ParamName: { } name })
            {
                var suffix = $" (Parameter '{name}')";
                int at = message.IndexOf(suffix, StringComparison.Ordinal);
                if (at >= 0) message = message.Remove(at, suffix.Length);
            }
            return LibraryNames.ToFlags(message);
        }

        /// <summary>Collapses a multi-line parser message onto one line.</summary>
        private static string OneLine(string s) =>
            string.Join(' ', s.Split(['\r', '\n', '\t'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));

        private static string FirstLine(string s)
        {
            int nl = s.IndexOfAny(['\r', '\n']);
            return nl < 0 ? s : s[..nl];
        }

        internal static (Device Device, ScalarType DType) DeviceAndDType(ParseResult p, CliOptions o, ILogger log)
        {
            var device = TorchRuntime.ParseDevice(p.GetValue(o.Device)!);
            TorchRuntime.Initialize(device);
            var dtypeText = p.GetValue(o.DType);
            var dtype = dtypeText is null ? (device.type == DeviceType.CUDA ? ScalarType.Float16 : ScalarType.Float32) : TorchRuntime.ParseDType(dtypeText);
            if (device.type == DeviceType.CPU && dtype != ScalarType.Float32)
                log.LogWarning("{DType} on the CPU is slow and not what the parity tests cover; fp32 is recommended there", dtype);
            return (device, dtype);
        }

        private static (EditOptions Edit, SelectionOptions? Selection, long[] Seeds) Settings(ParseResult p, CliOptions o, long[]? randomSeeds = null)
        {
            var edit = new EditOptions
            {
                InferenceSteps = p.GetValue(o.InferenceSteps),
                TextGuidance = p.GetValue(o.TextCfg),
                ImageGuidance = p.GetValue(o.ImageCfg),
                MaxBatch = p.GetValue(o.MaxBatch),
            };
            edit.Validate();
            int resolution = p.GetValue(o.Resolution);
            if (resolution < 64 || resolution > 4096)
                throw new ArgumentOutOfRangeException(nameof(resolution), $"--resolution must be between 64 and 4096, got {resolution}");
            bool elect = p.GetValue(o.SelectOneSeed);
            int random = p.GetValue(o.NumRandomCandidates);
            if (random < 0) throw new ArgumentOutOfRangeException(nameof(random), $"--num-random-candidates must be >= 0, got {random}");
            var given = p.GetResult(o.CandidateSeeds) is null ? null : p.GetValue(o.CandidateSeeds);
            if (given is { Length: 0 }) throw new ArgumentException("--candidate-seeds was given no seeds");
            long[] seeds = random > 0 ? randomSeeds ?? RandomSeeds(random)
                : given ?? (elect ? [1L] : [p.GetValue(o.Seed)]);
            if (seeds.Distinct().Count() != seeds.Length)
                throw new ArgumentException($"--candidate-seeds must be distinct: {string.Join(" ", seeds)}");
            SelectionOptions? selection = null;
            if (elect)
            {
                var stop = p.GetValue(o.StoppingStep)!.Trim();
                bool auto = stop.Equals("auto", StringComparison.OrdinalIgnoreCase);
                if (!auto && !int.TryParse(stop, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out _))
                    throw new ArgumentException($"--stopping-step must be a step number or 'auto', got '{stop}'");
                selection = new SelectionOptions
                {
                    StoppingStep = auto ? new SelectionOptions().StoppingStep : int.Parse(stop, System.Globalization.CultureInfo.InvariantCulture),
                    FirstMaskStep = p.GetValue(o.FirstMaskStep),
                    LastMaskStep = p.GetValue(o.LastMaskStep),
                    KeepAllSeeds = p.GetValue(o.VisualizeAllSeeds),
                    PruneAt = ParseSteps(p.GetValue(o.PruneAt), "--prune-at"),
                    Keep = p.GetValue(o.Keep),
                    AutoStop = auto,
                    AutoStopInterval = p.GetValue(o.AutoStopInterval),
                    AutoStopPatience = p.GetValue(o.AutoStopPatience),
                    AutoStopMargin = p.GetValue(o.AutoStopMargin),
                    AutoStopMaxStep = p.GetValue(o.AutoStopMaxStep),
                };
                selection.Validate(edit.InferenceSteps);
            }
            else
            {
                var beyond = new (string Flag, bool Given)[]
                {
                    ("--prune-at", p.GetResult(o.PruneAt) is not null), ("--keep", p.GetResult(o.Keep) is not null),
                    ("--stopping-step auto", p.GetValue(o.StoppingStep)!.Trim().Equals("auto", StringComparison.OrdinalIgnoreCase)),
                    ("--known-mask", p.GetResult(o.KnownMask) is not null), ("--use-dataset-mask", p.GetValue(o.UseDatasetMask)),
                }.FirstOrDefault(f => f.Given);
                if (beyond.Flag is not null) throw new ArgumentException($"{beyond.Flag} changes ELECT's selection; add --select-one-seed");
            }
            return (edit, selection, seeds);
        }

        /// <summary>"20,30" → [20, 30]; null for no value.</summary>
        private static int[]? ParseSteps(string? text, string option)
        {
            if (text is null) return null;
            var parts = text.Split(',', StringSplitOptions.TrimEntries);
            var steps = new int[parts.Length];
            for (int k = 0; k < parts.Length; k++)
                if (!int.TryParse(parts[k], System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out steps[k]))
                    throw new ArgumentException($"{option} must be comma-separated step numbers, got '{text}'");
            return steps;
        }

        /// <summary>The reference's random.sample(range(1, 100000), n).</summary>
        private static long[] RandomSeeds(int n)
        {
            if (n > 99999) throw new ArgumentOutOfRangeException(nameof(n), "--num-random-candidates must be at most 99999");
            var set = new HashSet<long>();
            var list = new List<long>();
            while (list.Count < n)
            {
                long s = Random.Shared.NextInt64(1, 100000);
                if (set.Add(s)) list.Add(s);
            }
            return list.ToArray();
        }

        private static string ModelPath(ParseResult p, CliOptions o) =>
            p.GetValue(o.ModelPath) ?? Editor.DefaultCheckpointPath(p.GetValue(o.Model)!);

        private static ResourceLimits Limits(ParseResult p, CliOptions o)
        {
            var limits = new ResourceLimits { MaxPixels = p.GetValue(o.MaxPixels), MaxAspect = p.GetValue(o.MaxAspect) };
            limits.Validate();
            return limits;
        }

        /// <summary>Fails now, before any model work, when <paramref name="dir"/> cannot hold outputs.</summary>
        internal static void CheckOutputDir(string dir, string option = "--output-dir")
        {
            if (File.Exists(dir)) throw new IOException($"{option} {dir} is a file, not a folder");
            try
            {
                Directory.CreateDirectory(dir);
                var probe = Path.Combine(dir, $".elect-write-test-{Environment.ProcessId}");
                File.WriteAllText(probe, "");
                File.Delete(probe);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new IOException($"{option} {dir} is not writable: {e.Message}", e);
            }
        }

        /// <summary>Fails now when a report file could not be written later.</summary>
        internal static void CheckReportFile(string? path, string option = "--report")
        {
            if (path is null) return;
            if (Directory.Exists(path)) throw new IOException($"{option} {path} is a folder, not a file");
            var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
            CheckOutputDir(dir, $"the folder of {option}");
            if (File.Exists(path) && File.GetAttributes(path).HasFlag(FileAttributes.ReadOnly))
                throw new IOException($"{option} {path} is read-only");
        }

        /// <summary>
        /// <see cref="Editor.Load"/> after checking that the checkpoint's weights fit the free memory of the device
        /// (<see cref="WeightMemory"/>): a model too large is refused with one line instead of being killed mid-load.
        /// </summary>
        private static Editor LoadEditor(string modelPath, string family, Device device, ScalarType dtype, ILogger log, string? tokenizerPath)
        {
            CheckWeights(modelPath, family, device, dtype, log, tokenizerPath);
            return Editor.Load(modelPath, family, device, dtype, log, tokenizerPath);
        }

        /// <summary>Refuses (one line) a checkpoint whose weights at <paramref name="dtype"/> exceed the device's free memory.</summary>
        private static void CheckWeights(string modelPath, string family, Device device, ScalarType dtype, ILogger log, string? tokenizerPath)
        {
            var entry = ModelFamilies.Get(family);
            var bytes = WeightMemory.Check(entry, entry.Request(modelPath, tokenizerPath, device, dtype, log));
            if (bytes is { } b) log.LogDebug("weights: {Size} at {DType}", Elect.Modeling.WeightFootprint.Gb(b), dtype);
        }

        /// <summary>Reduces the batching to what the memory estimate says fits (or refuses); logs what it did.</summary>
        private static EditOptions PlanMemory(Editor editor, EditOptions edit, int candidates, int width, int height, ILogger log)
        {
            var dev = editor.Model.Device;
            int? decode = edit.MaxDecodeBatch ?? (dev.type == DeviceType.CUDA ? 4 : null);
            var plan = MemoryEstimate.Plan(candidates, edit.MaxBatch, decode, width, height, editor.Model.DownsampleFactor,
                editor.Model.DType, MemoryProbe.AvailableBytes(dev), MemoryProbe.AvailableName(dev));
            if (plan.MicroBatched)
            {
                log.LogWarning("{Plan}", plan.Explanation);
                return edit with { MaxBatch = plan.MaxBatch, MaxDecodeBatch = plan.MaxDecodeBatch };
            }
            log.LogDebug("memory: {Plan}", plan.Explanation);
            return edit;
        }

        /// <summary>Ctrl-C (SIGINT) and SIGTERM cancel the token: the run stops at the next step and writes what it has.</summary>
        private sealed class Interrupt : IDisposable
        {
            private readonly CancellationTokenSource _cts = new();
            private readonly PosixSignalRegistration? _int, _term;

            public Interrupt()
            {
                try
                {
                    _int = PosixSignalRegistration.Create(PosixSignal.SIGINT, Handle);
                    _term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Handle);
                }
                catch (PlatformNotSupportedException) { }
            }

            private void Handle(PosixSignalContext context)
            {
                if (_cts.IsCancellationRequested) return;   // a second signal terminates as usual
                context.Cancel = true;
                _cts.Cancel();
            }

            public CancellationToken Token => _cts.Token;

            public void Dispose()
            {
                _int?.Dispose();
                _term?.Dispose();
                _cts.Dispose();
            }
        }

        /// <summary>Exit code of an interrupted run (128 + SIGINT).</summary>
        public const int InterruptedExitCode = 130;

        /// <summary>Exit code of a dataset run that finished with failed items.</summary>
        public const int FailedItemsExitCode = 3;

        private static int RunSingle(ParseResult p, CliOptions o, Option<string> inputOpt, Option<string> instructionOpt,
                                     TextWriter stdout, TextWriter stderr, ILogger log)
        {
            var inputPath = p.GetValue(inputOpt)!;
            var instruction = p.GetValue(instructionOpt)!;
            if (string.IsNullOrWhiteSpace(instruction)) throw new ArgumentException("--instruction is empty");
            var (edit, selection, seeds) = Settings(p, o);
            var limits = Limits(p, o);
            var outputDir = p.GetValue(o.OutputDir)!;
            var reportPath = p.GetValue(o.Report);
            CheckOutputDir(outputDir);
            CheckReportFile(reportPath);
            int resolution = p.GetValue(o.Resolution);
            var loaded = RgbImage.Load(inputPath);
            limits.CheckImage(loaded.Width, loaded.Height, resolution, inputPath);
            var image = ImageOps.ImageResize(loaded, resolution);
            var maskPath = p.GetValue(o.MaskImage);
            if (maskPath is not null && !ModelFamilies.Get(p.GetValue(o.Model)!).TakesMask)   // before any model work
                throw new ArgumentException($"--model {p.GetValue(o.Model)} takes no mask image; drop --mask-image");
            RgbImage? mask = maskPath is not null ? ImageOps.Fit(RgbImage.Load(maskPath), image.Width, image.Height) : null;
            if (p.GetValue(o.KnownMask) is { } knownPath)
                selection = selection! with { KnownMask = KnownMask.Fit(RgbImage.Load(knownPath), image.Width, image.Height) };
            var (device, dtype) = DeviceAndDType(p, o, log);
            using var editor = LoadEditor(ModelPath(p, o), p.GetValue(o.Model)!, device, dtype, log, p.GetValue(o.TokenizerPath));
            edit = PlanMemory(editor, edit, seeds.Length, image.Width, image.Height, log);
            log.LogInformation("{Mode} {Name} ({W}x{H}), seeds {Seeds}, {Steps} steps", selection is null ? "plain run of" : "ELECT on",
                inputPath, image.Width, image.Height, string.Join(" ", seeds), edit.InferenceSteps);
            var name = EditOutputs.InputName(inputPath);
            using var interrupt = new Interrupt();
            using var bar = new ProgressBar(stderr, log);
            EditResult result;
            try
            {
                result = editor.Edit(image, instruction, seeds, edit, selection, mask, bar, interrupt.Token);
            }
            catch (OperationCanceledException)
            {
                bar.Finish();
                stderr.WriteLine("elect: interrupted; nothing written");
                return InterruptedExitCode;
            }
            using (result)
            {
                bar.Finish();
                var files = EditOutputs.Write(outputDir, name, image, result);
                foreach (var f in files) stdout.WriteLine(f);
                if (result.Generated is { } generated)
                    log.LogInformation("the multimodal LLM wrote: \"{Text}\" ({Tokens} new tokens)", generated.Text, generated.GeneratedTokens);
                if (result.BestSeed is { } best)
                    log.LogInformation("BIS at step {Step}: {Scores}; best seed {Seed}; {Nfe} model evaluations instead of {Full} for Best-of-{N}",
                        result.StoppingStep, string.Join(", ", result.Seeds.Select((s, k) => $"{s}={result.Bis![k]:F5}")), best,
                        result.ModelEvaluations, result.BestOfNEvaluations, seeds.Length);
                if (result.Confidence is { Flags.Count: > 0 } confidence)
                    log.LogWarning("low confidence in the selection: {Flags} (relative margin {Margin:G3}, edited fraction of the map {Coverage:F3})",
                        string.Join(", ", confidence.Flags), confidence.RelativeMargin, confidence.MaskCoverage);
                if (reportPath is not null)
                {
                    var report = EditReport.Create(name, instruction, result, files, editor) with
                    {
                        InputPath = inputPath,
                        Memory = MemoryProbe.Snapshot(device),
                    };
                    JsonFiles.Write(reportPath, report);
                }
            }
            return 0;
        }

        private static int RunDataset(ParseResult p, CliOptions o, Option<string> dirOpt, Option<bool> noResume, Option<int?> limit,
                                      Option<bool> forceOpt, Option<string> turnsOpt, TextWriter stderr, ILogger log)
        {
            var dir = p.GetValue(dirOpt)!;
            var outputDir = p.GetValue(o.OutputDir)!;
            var reportPath = p.GetValue(o.Report);
            if (p.GetValue(limit) is < 0) throw new ArgumentException($"--limit must be >= 0, got {p.GetValue(limit)}");
            if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"dataset folder not found: {dir}");
            CheckOutputDir(outputDir);
            CheckReportFile(reportPath);
            var existing = RunManifest.Read(outputDir);
            var reused = RunManifest.RandomSeedsOf(existing, p.GetValue(o.NumRandomCandidates));
            var (edit, selection, seeds) = Settings(p, o, reused);
            var turns = p.GetValue(turnsOpt) switch
            {
                "independent" => MagicBrushTurns.Independent,
                "iterative" => MagicBrushTurns.Iterative,
                var other => throw new ArgumentException($"--magicbrush-turns: '{other}' is not independent or iterative"),
            };
            DatasetRunner.CheckMagicBrushTurns(dir, turns, selection is not null, seeds.Length);
            if (reused is not null) log.LogInformation("resuming with the {N} random seeds the earlier run drew: {Seeds}", reused.Length, string.Join(" ", reused));
            var limits = Limits(p, o);
            int resolution = p.GetValue(o.Resolution);
            var oversized = DatasetRunner.PrecheckSizes(dir, resolution, limits);
            if (oversized.Count > 0)
            {
                if (oversized.Count == EditDataset.Load(dir).Items.Count) throw new ArgumentException(oversized[0].Error);
                log.LogWarning("{Count} item(s) exceed the size limits and will fail, e.g. {Error}", oversized.Count, oversized[0].Error);
            }
            var modelPath = ModelPath(p, o);
            var family = p.GetValue(o.Model)!;
            var (device, dtype) = DeviceAndDType(p, o, log);
            CheckWeights(modelPath, family, device, dtype, log, p.GetValue(o.TokenizerPath));   // before anything is written
            var manifest = RunManifest.Create(family, modelPath, dtype, resolution, edit, edit.TextGuidance ?? Editor.DefaultTextGuidance(family),
                selection, seeds, p.GetValue(o.NumRandomCandidates), p.GetValue(o.UseDatasetMask));
            if (existing is null && Directory.EnumerateFiles(outputDir, "*" + DatasetRunner.ItemReportFile("")).Any())
                log.LogWarning("{Dir} holds item reports but no {Manifest}: their settings cannot be checked", outputDir, RunManifest.FileName);
            var forced = RunManifest.CheckAndWrite(outputDir, manifest, p.GetValue(forceOpt));
            if (forced.Count > 0) log.LogWarning("--force: mixing results of other settings ({Diffs})", string.Join("; ", forced));
            using var editor = Editor.Load(modelPath, family, device, dtype, log, p.GetValue(o.TokenizerPath));
            var square = ImageOps.ImageResizeSize(resolution, resolution, resolution);
            edit = PlanMemory(editor, edit, seeds.Length, square.Width, square.Height, log);
            var runner = new DatasetRunner(editor, log);
            using var interrupt = new Interrupt();
            using var bar = new ProgressBar(stderr, log);
            DatasetSummary summary;
            try
            {
                summary = runner.Run(new DatasetRunOptions
                {
                    DatasetDir = dir,
                    OutputDir = outputDir,
                    Resolution = resolution,
                    Seeds = seeds,
                    Edit = edit,
                    Selection = selection,
                    UseDatasetMask = p.GetValue(o.UseDatasetMask),
                    Resume = !p.GetValue(noResume),
                    Limit = p.GetValue(limit),
                    Limits = limits,
                    MagicBrushTurns = turns,
                }, bar, interrupt.Token);
            }
            catch (OperationCanceledException)
            {
                bar.Finish();
                stderr.WriteLine($"elect: interrupted; {Path.Combine(outputDir, DatasetRunner.SummaryFile)} lists the items finished so far (rerun to resume)");
                return InterruptedExitCode;
            }
            bar.Finish();
            if (reportPath is not null) JsonFiles.Write(reportPath, summary);
            int failed = summary.Failed;
            log.LogInformation("dataset done: {Done} edited, {Skipped} already done, {Failed} failed; {Completed} of {Items} items complete",
                summary.Done, summary.SkippedResume, failed, summary.Completed, summary.Items);
            if (failed > 0)
            {
                stderr.WriteLine($"elect: {failed} item(s) failed (see {Path.Combine(outputDir, DatasetRunner.SummaryFile)}); exit code {FailedItemsExitCode}");
                return FailedItemsExitCode;
            }
            return 0;
        }
    }

    /// <summary>
    /// Progress everywhere: on a terminal, a live one-line bar on stderr; otherwise (CI logs, nohup, a pipe) an
    /// information log line when a phase starts and every ~10% of the steps, with the rate and an ETA. Dataset
    /// runs prefix the item (i/n).
    /// </summary>
    internal sealed class ProgressBar(TextWriter writer, ILogger? log = null) : IProgress<EditProgress>, IProgress<DatasetItemProgress>, IDisposable
    {
        private readonly bool _terminal = ReferenceEquals(writer, Console.Error) && !Console.IsErrorRedirected;
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private bool _dirty;
        private string _item = "";
        private string? _phase;
        private int _decile = -1;

        public void Report(DatasetItemProgress value)
        {
            Finish();
            _item = $"item {value.Index}/{value.Count} {value.Key}: ";
        }

        public void Report(EditProgress value)
        {
            double elapsed = _clock.Elapsed.TotalSeconds;
            if (_terminal)
            {
                const int width = 30;
                int filled = value.TotalSteps == 0 ? width : value.Step * width / value.TotalSteps;
                writer.Write($"\r{_item}[{new string('#', filled)}{new string('.', width - filled)}] {value.Step}/{value.TotalSteps} {value.Phase} ({value.ActiveCandidates} active) {elapsed:F1}s ");
                _dirty = true;
            }
            else if (log is not null)
            {
                int decile = value.TotalSteps == 0 ? 10 : value.Step * 10 / value.TotalSteps;
                if (value.Phase != _phase)
                    log.LogInformation("{Item}{Phase} phase: {Active} candidate(s), steps from {Step} of {Total}", _item, value.Phase, value.ActiveCandidates, value.Step, value.TotalSteps);
                if (decile != _decile || value.Phase != _phase)
                {
                    double rate = elapsed > 0 ? value.Step / elapsed : 0;
                    double eta = rate > 0 ? (value.TotalSteps - value.Step) / rate : 0;
                    log.LogInformation("{Item}step {Step}/{Total} ({Phase}, {Active} active): {Rate:F2} steps/s, {Elapsed:F1} s elapsed, ETA {Eta:F1} s",
                        _item, value.Step, value.TotalSteps, value.Phase, value.ActiveCandidates, rate, elapsed, eta);
                }
                _decile = decile;
                _phase = value.Phase;
            }
            if (value.Step == value.TotalSteps) Finish();
        }

        public void Finish()
        {
            if (_dirty) writer.WriteLine();
            _dirty = false;
            _phase = null;
            _decile = -1;
            _clock.Restart();
        }

        public void Dispose() => Finish();
    }
}
