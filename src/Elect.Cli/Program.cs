using System.CommandLine;
using System.Diagnostics;
using Elect;
using Elect.Cli;
using Elect.Datasets;
using Elect.Editing;
using Elect.Imaging;
using Elect.Modeling;
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
            single.SetAction(p => Guard(stderr, p.GetValue(common.LogLevel)!, log => RunSingle(p, common, input, instruction, stdout, stderr, log)));
            root.Add(single);

            var dataset = new Command("run-dataset", "Edit every item of a dataset (PIE-Bench mapping_file.json or a generic dataset.json)");
            var dcommon = new CliOptions();
            var datasetDir = new Option<string>("--dataset-dir") { Description = "Dataset folder", DefaultValueFactory = _ => "./datasets/PIE-bench" };
            var noResume = new Option<bool>("--no-resume") { Description = "Redo items that already have a report" };
            var limit = new Option<int?>("--limit") { Description = "Process at most this many items" };
            dataset.Add(datasetDir);
            dataset.Add(noResume);
            dataset.Add(limit);
            dcommon.AddTo(dataset);
            dataset.SetAction(p => Guard(stderr, p.GetValue(dcommon.LogLevel)!, log => RunDataset(p, dcommon, datasetDir, noResume, limit, stderr, log)));
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
                var message = e is TypeInitializationException { InnerException: { } inner } ? inner.Message : e.Message;
                stderr.WriteLine($"elect: error: {FirstLine(message)}");
                if (level <= LogLevel.Debug) stderr.WriteLine(e.ToString());
                return 1;
            }
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

        private static (EditOptions Edit, SelectionOptions? Selection, long[] Seeds) Settings(ParseResult p, CliOptions o)
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
            long[] seeds = random > 0 ? RandomSeeds(random)
                : given ?? (elect ? [1L] : [p.GetValue(o.Seed)]);
            if (seeds.Distinct().Count() != seeds.Length)
                throw new ArgumentException($"--candidate-seeds must be distinct: {string.Join(" ", seeds)}");
            SelectionOptions? selection = null;
            if (elect)
            {
                selection = new SelectionOptions
                {
                    StoppingStep = p.GetValue(o.StoppingStep),
                    FirstMaskStep = p.GetValue(o.FirstMaskStep),
                    LastMaskStep = p.GetValue(o.LastMaskStep),
                    KeepAllSeeds = p.GetValue(o.VisualizeAllSeeds),
                };
                selection.Validate(edit.InferenceSteps);
            }
            return (edit, selection, seeds);
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

        private static int RunSingle(ParseResult p, CliOptions o, Option<string> inputOpt, Option<string> instructionOpt,
                                     TextWriter stdout, TextWriter stderr, ILogger log)
        {
            var inputPath = p.GetValue(inputOpt)!;
            var instruction = p.GetValue(instructionOpt)!;
            if (string.IsNullOrWhiteSpace(instruction)) throw new ArgumentException("--instruction is empty");
            var (edit, selection, seeds) = Settings(p, o);
            var image = ImageOps.ImageResize(RgbImage.Load(inputPath), p.GetValue(o.Resolution));
            RgbImage? mask = p.GetValue(o.MaskImage) is { } maskPath ? ImageOps.Fit(RgbImage.Load(maskPath), image.Width, image.Height) : null;
            var (device, dtype) = DeviceAndDType(p, o, log);
            using var editor = Editor.Load(ModelPath(p, o), p.GetValue(o.Model)!, device, dtype, log, p.GetValue(o.TokenizerPath));
            log.LogInformation("{Mode} {Name} ({W}x{H}), seeds {Seeds}, {Steps} steps", selection is null ? "plain run of" : "ELECT on",
                inputPath, image.Width, image.Height, string.Join(" ", seeds), edit.InferenceSteps);
            var name = EditOutputs.InputName(inputPath);
            using var bar = new ProgressBar(stderr);
            using var result = editor.Edit(image, instruction, seeds, edit, selection, mask, bar);
            bar.Finish();
            var files = EditOutputs.Write(p.GetValue(o.OutputDir)!, name, image, result);
            foreach (var f in files) stdout.WriteLine(f);
            if (result.BestSeed is { } best)
                log.LogInformation("BIS at step {Step}: {Scores}; best seed {Seed}; {Nfe} model evaluations instead of {Full} for Best-of-{N}",
                    result.StoppingStep, string.Join(", ", result.Seeds.Select((s, k) => $"{s}={result.Bis![k]:F5}")), best,
                    result.ModelEvaluations, result.BestOfNEvaluations, seeds.Length);
            if (p.GetValue(o.Report) is { } reportPath)
            {
                var report = EditOutputs.Report(name, instruction, result, files, editor);
                report["input_path"] = inputPath;
                report["memory"] = MemoryProbe.Snapshot(device);
                EditOutputs.WriteJson(reportPath, report);
            }
            return 0;
        }

        private static int RunDataset(ParseResult p, CliOptions o, Option<string> dirOpt, Option<bool> noResume, Option<int?> limit,
                                      TextWriter stderr, ILogger log)
        {
            var (edit, selection, seeds) = Settings(p, o);
            var dir = p.GetValue(dirOpt)!;
            if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"dataset folder not found: {dir}");
            var (device, dtype) = DeviceAndDType(p, o, log);
            using var editor = Editor.Load(ModelPath(p, o), p.GetValue(o.Model)!, device, dtype, log, p.GetValue(o.TokenizerPath));
            var runner = new DatasetRunner(editor, log);
            using var bar = new ProgressBar(stderr);
            var summary = runner.Run(new DatasetRunOptions
            {
                DatasetDir = dir,
                OutputDir = p.GetValue(o.OutputDir)!,
                Resolution = p.GetValue(o.Resolution),
                Seeds = seeds,
                Edit = edit,
                Selection = selection,
                Resume = !p.GetValue(noResume),
                Limit = p.GetValue(limit),
            }, bar);
            bar.Finish();
            if (p.GetValue(o.Report) is { } reportPath) EditOutputs.WriteJson(reportPath, summary);
            log.LogInformation("dataset done: {Done} edited, {Skipped} already done, {Failed} failed",
                summary["done"]!.GetValue<int>(), summary["skipped_resume"]!.GetValue<int>(), summary["failed"]!.GetValue<int>());
            return 0;
        }
    }

    /// <summary>A one-line progress bar on a terminal's stderr (silent when stderr is redirected).</summary>
    internal sealed class ProgressBar(TextWriter writer) : IProgress<EditProgress>, IDisposable
    {
        private readonly bool _enabled = ReferenceEquals(writer, Console.Error) && !Console.IsErrorRedirected;
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private bool _dirty;

        public void Report(EditProgress value)
        {
            if (!_enabled) return;
            const int width = 30;
            int filled = value.TotalSteps == 0 ? width : value.Step * width / value.TotalSteps;
            writer.Write($"\r[{new string('#', filled)}{new string('.', width - filled)}] {value.Step}/{value.TotalSteps} {value.Phase} ({value.ActiveCandidates} active) {_clock.Elapsed.TotalSeconds:F1}s ");
            _dirty = true;
            if (value.Step == value.TotalSteps) Finish();
        }

        public void Finish()
        {
            if (_dirty) writer.WriteLine();
            _dirty = false;
            _clock.Restart();
        }

        public void Dispose() => Finish();
    }
}
