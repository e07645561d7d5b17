using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using Elect.Cli;
using Elect.Datasets;
using Elect.Selection;
using Elect.Runner;
using Elect.Imaging;
using Elect.Modeling;
using Elect.Pipelines;
using Elect.Schedulers;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Elect.Tests;

/// <summary>
/// "Nothing lost, nothing silent" (issue 11): interrupted and rerun dataset runs, settings changes on
/// resume, resource and path checks before any model work, non-finite numbers, progress off a terminal,
/// exit codes. Dataset runs use the tiny fixture model at 64x64 with few steps; the kill/interrupt tests
/// run the real CLI as a child process (about 3-5 s each).
/// </summary>
public sealed class ReliabilityTests : IDisposable
{
    private readonly string _tmp = Directory.CreateTempSubdirectory("elect-rel-").FullName;

    public void Dispose() => Directory.Delete(_tmp, recursive: true);

    private static (int Code, string Out, string Err) Cli(params string[] args) => CliHarness.Run(args);

    /// <summary>The CLI as a child process (stdout/stderr redirected, so not a terminal).</summary>
    private sealed class Child : IDisposable
    {
        private readonly StringBuilder _out = new(), _err = new();
        public Process Process { get; }

        public Child(IEnumerable<string> args)
        {
            var host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } h && File.Exists(h) ? h : "dotnet";
            var psi = new ProcessStartInfo(host) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "elect.dll"));
            foreach (var a in args) psi.ArgumentList.Add(a);
            Process = Process.Start(psi)!;
            Process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_out) _out.AppendLine(e.Data); };
            Process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_err) _err.AppendLine(e.Data); };
            Process.BeginOutputReadLine();
            Process.BeginErrorReadLine();
        }

        public string Err { get { lock (_err) return _err.ToString(); } }

        public int Wait(int seconds = 120)
        {
            Assert.True(Process.WaitForExit(seconds * 1000), $"child did not exit in {seconds} s; stderr: {Err}");
            Process.WaitForExit();   // drain the redirected streams
            return Process.ExitCode;
        }

        public void Dispose()
        {
            if (!Process.HasExited) Process.Kill(entireProcessTree: true);
            Process.Dispose();
        }
    }

    private string Out => Path.Combine(_tmp, "out");

    private string[] Common(params string[] extra) =>
        ["--model-path", Fixtures.Ip2pTiny, "--device", "cpu", "--output-dir", Out, .. extra];

    /// <summary>A generic dataset of <paramref name="n"/> copies of the fixture input (plus optional extra entries).</summary>
    private string Dataset(int n, string extraEntries = "")
    {
        var ds = Directory.CreateDirectory(Path.Combine(_tmp, "ds")).FullName;
        File.Copy(Path.Combine(Fixtures.Require(), "models", "ip2p-input.png"), Path.Combine(ds, "a.png"), overwrite: true);
        var entries = Enumerable.Range(0, n).Select(i => $"\"item{i:D2}\": {{\"image_path\": \"a.png\", \"editing_instruction\": \"make it blue\"}}");
        File.WriteAllText(Path.Combine(ds, "dataset.json"), "{" + string.Join(",\n", entries) + extraEntries + "}");
        return ds;
    }

    private string[] DatasetArgs(string ds, int steps, params string[] extra) =>
        ["run-dataset", "--dataset-dir", ds, .. Common(["--resolution", "64", "--inference-steps", steps.ToString(), "--select-one-seed",
         "--candidate-seeds", "1", "2", "--stopping-step", "2", "--last-step-for-mask-extraction", "1", .. extra])];

    private JsonNode Summary() => JsonNode.Parse(File.ReadAllText(Path.Combine(Out, "summary.json")))!;

    private static string[] ResultKeys(JsonNode summary) =>
        summary["results"]!.AsArray().Select(r => r!["input"]!.GetValue<string>()).ToArray();

    // ---- defect 1: summary.json loses results ----

    [SkippableFact]
    public void KilledMidItemThenResumedTheSummaryListsEveryItem()
    {
        const int n = 6, steps = 10;
        var ds = Dataset(n);
        using (var child = new Child([.. DatasetArgs(ds, steps), "--log-level", "warning"]))
        {
            var deadline = Stopwatch.StartNew();
            while (!Directory.Exists(Out) || Directory.GetFiles(Out, "*_report.json").Length < 1)
            {
                Assert.False(child.Process.HasExited, $"the run ended before it could be killed: {child.Err}");
                Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(120), "no item finished in 120 s");
                Thread.Sleep(10);
            }
            child.Process.Kill();   // SIGKILL: no handler runs, nothing is flushed
            child.Process.WaitForExit();
        }
        int before = Directory.GetFiles(Out, "*_report.json").Length;
        Assert.InRange(before, 1, n - 1);
        var (code, _, err) = Cli([.. DatasetArgs(ds, steps), "--log-level", "warning"]);
        Assert.True(code == 0, err);
        var summary = Summary();
        Assert.Equal(Enumerable.Range(0, n).Select(i => $"item{i:D2}"), ResultKeys(summary));
        Assert.Equal(n, summary["completed"]!.GetValue<int>());
        Assert.Equal(n - before, summary["done"]!.GetValue<int>());
        Assert.Equal(before, summary["skipped_resume"]!.GetValue<int>());
        long perItem = 2 * 2 + (steps - 2);
        Assert.Equal(n * perItem, summary["nfe"]!.GetValue<long>());
        Assert.Equal(n * 2L * steps, summary["nfe_best_of_n"]!.GetValue<long>());
        Assert.Equal(n, summary["memory"]!["items"]!.GetValue<int>());
        Assert.False(summary["interrupted"]!.GetValue<bool>());
    }

    [SkippableFact]
    public void PlainRerunOfAFinishedFolderKeepsEveryResult()
    {
        var ds = Dataset(3);
        Assert.Equal(0, Cli([.. DatasetArgs(ds, 3), "--log-level", "warning"]).Code);
        var (code, _, err) = Cli([.. DatasetArgs(ds, 3), "--log-level", "warning"]);
        Assert.True(code == 0, err);
        var summary = Summary();
        Assert.Equal(["item00", "item01", "item02"], ResultKeys(summary));
        Assert.Equal(3 * (2 * 2 + 1), summary["nfe"]!.GetValue<long>());
        Assert.Equal(0, summary["done"]!.GetValue<int>());
        Assert.Equal(3, summary["skipped_resume"]!.GetValue<int>());
    }

    [SkippableFact]
    public void InterruptWritesTheSummaryAndExits130()
    {
        var ds = Dataset(12);
        using var child = new Child([.. DatasetArgs(ds, 10), "--log-level", "warning"]);
        var deadline = Stopwatch.StartNew();
        while (!Directory.Exists(Out) || Directory.GetFiles(Out, "*_report.json").Length < 1)
        {
            Assert.False(child.Process.HasExited, child.Err);
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(120), "no item finished in 120 s");
            Thread.Sleep(10);
        }
        using (var kill = Process.Start("kill", ["-INT", child.Process.Id.ToString()])) kill.WaitForExit();
        int code = child.Wait();
        Assert.True(code == ElectCli.InterruptedExitCode, $"exit {code}: {child.Err}");
        Assert.Contains("interrupted", child.Err);
        var summary = Summary();
        Assert.True(summary["interrupted"]!.GetValue<bool>());
        int reports = Directory.GetFiles(Out, "*_report.json").Length;
        Assert.Equal(reports, summary["completed"]!.GetValue<int>());
        Assert.Equal(reports, summary["results"]!.AsArray().Count);
        Assert.InRange(reports, 1, 11);
    }

    // ---- defect 3: resume ignores changed settings ----

    [SkippableFact]
    public void ResumeWithChangedSettingsIsRefusedUnlessForced()
    {
        var ds = Dataset(2);
        Assert.Equal(0, Cli([.. DatasetArgs(ds, 3), "--log-level", "warning"]).Code);
        var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(Out, RunManifest.FileName)))!;
        Assert.Equal(64, manifest["resolution"]!.GetValue<int>());
        Assert.Equal("ip2p-tiny", Path.GetFileName(manifest["checkpoint"]!.GetValue<string>()));
        Assert.Equal(16, manifest["checkpoint_id"]!.GetValue<string>().Length);

        string[][] changes =
        [
            ["--inference-steps", "4"],
            ["--candidate-seeds", "1", "3"],
            ["--stopping-step", "1"],
            ["--text-cfg-scale", "5"],
        ];
        (int, string, string) Run(int steps, string[] extra, params string[] more)
        {
            var args = DatasetArgs(ds, steps, more).ToList();
            for (int k = 0; k < extra.Length; k += 1)
                if (extra[k].StartsWith("--"))
                {
                    int at = args.IndexOf(extra[k]);
                    if (at >= 0)
                    {
                        int end = at + 1;
                        while (end < args.Count && !args[end].StartsWith("--")) end++;
                        args.RemoveRange(at, end - at);
                    }
                }
            args.AddRange(extra);
            return Cli([.. args, "--log-level", "warning"]);
        }
        var (code, _, err) = Run(3, ["--resolution", "128"]);
        Assert.Equal(1, code);
        Assert.StartsWith("elect: error: ", err);
        Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("resolution 64 -> 128", err);
        Assert.Contains("--force", err);
        foreach (var change in changes)
        {
            var (c, _, e) = Run(3, change);
            Assert.True(c == 1, $"{string.Join(' ', change)}: exit {c}: {e}");
            Assert.Contains("other settings", e);
        }
        var (c4, _, e4) = Run(3, ["--candidate-seeds", "1", "3"]);
        Assert.Contains("seeds 1 2 -> 1 3", e4);
        Assert.Equal(1, c4);

        // the same settings resume; --force mixes deliberately and records the old settings
        Assert.Equal(0, Run(3, []).Item1);
        var (cf, _, ef) = Run(3, ["--resolution", "128", "--force"]);
        Assert.True(cf == 0, ef);
        var forced = JsonNode.Parse(File.ReadAllText(Path.Combine(Out, RunManifest.FileName)))!;
        Assert.Equal(128, forced["resolution"]!.GetValue<int>());
        Assert.Equal(64, forced["previous"]![0]!["resolution"]!.GetValue<int>());
    }

    // ---- defect 2: resource guard; defect 4: paths checked up front ----

    [Fact]
    public void HugeOrThinImagesAreRefusedBeforeAnyModelWork()
    {
        var thin = Path.Combine(_tmp, "thin.png");
        new RgbImage(20000, 10).SavePng(thin);
        var square = Path.Combine(_tmp, "square.png");
        new RgbImage(512, 512).SavePng(square);
        var noModel = Path.Combine(_tmp, "no-such-checkpoint");   // reaching the model would fail with another message
        string[] Args(string input, params string[] extra) =>
            ["run-single", "--input", input, "--instruction", "x", "--model-path", noModel, "--device", "cpu", "--output-dir", Out, .. extra];
        var sw = Stopwatch.StartNew();
        var (code, _, err) = Cli(Args(thin, "--resolution", "64"));
        Assert.Equal(1, code);
        Assert.Contains("128000x64", err);
        Assert.Contains("--max-pixels 1048576", err);
        var (code2, _, err2) = Cli(Args(square, "--resolution", "4096"));
        Assert.Equal(1, code2);
        Assert.Contains("--resolution 4096 gives a 4096x4096 image (16.8 MP), above --max-pixels 1048576", err2);
        var (code3, _, err3) = Cli(Args(thin, "--resolution", "64", "--max-pixels", "100000000"));
        Assert.Equal(1, code3);
        Assert.Contains("aspect ratio 2000:1, above --max-aspect 8", err3);
        // a dataset whose every item is too large is refused before the model is loaded too
        var ds = Directory.CreateDirectory(Path.Combine(_tmp, "big")).FullName;
        File.Copy(square, Path.Combine(ds, "s.png"));
        File.WriteAllText(Path.Combine(ds, "dataset.json"), """{"a": {"image_path": "s.png", "editing_instruction": "x"}}""");
        var (code4, _, err4) = Cli("run-dataset", "--dataset-dir", ds, "--model-path", noModel, "--device", "cpu", "--output-dir", Out, "--resolution", "4096");
        Assert.Equal(1, code4);
        Assert.Contains("above --max-pixels 1048576", err4);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(30));   // not a speed test: the point is that nothing was loaded
        foreach (var e in new[] { err, err2, err3, err4 }) Assert.DoesNotContain("checkpoint", e);
    }

    [Fact]
    public void OutputAndReportPathsAreCheckedBeforeAnyModelWork()
    {
        var image = Path.Combine(_tmp, "square.png");
        new RgbImage(64, 64).SavePng(image);
        var file = Path.Combine(_tmp, "a-file");
        File.WriteAllText(file, "");
        var noModel = Path.Combine(_tmp, "no-such-checkpoint");
        string[] Args(params string[] extra) =>
            ["run-single", "--input", image, "--instruction", "x", "--model-path", noModel, "--device", "cpu", "--resolution", "64", .. extra];
        var (code, _, err) = Cli(Args("--output-dir", file));
        Assert.Equal(1, code);
        Assert.Contains($"--output-dir {file} is a file", err);
        var (code2, _, err2) = Cli(Args("--output-dir", Out, "--report", _tmp));
        Assert.Equal(1, code2);
        Assert.Contains("--report", err2);
        Assert.Contains("is a folder", err2);
        var (code3, _, err3) = Cli(Args("--output-dir", Out, "--report", Path.Combine(file, "r.json")));
        Assert.Equal(1, code3);
        Assert.Contains("--report", err3);
        var ds = Directory.CreateDirectory(Path.Combine(_tmp, "ds")).FullName;
        File.WriteAllText(Path.Combine(ds, "dataset.json"), "{}");
        var (code4, _, err4) = Cli("run-dataset", "--dataset-dir", ds, "--model-path", noModel, "--device", "cpu", "--output-dir", file);
        Assert.Equal(1, code4);
        Assert.Contains("is a file", err4);
    }

    [Fact]
    public void MemoryPlanMicroBatchesOrRefuses()
    {
        // SD 1.5 at 512x512, fp16, 10 candidates: ~9.8 GB of denoiser activations
        var fits = MemoryEstimate.Plan(10, null, 4, 512, 512, 8, ScalarType.Float16, 40_000_000_000, "cuda");
        Assert.False(fits.MicroBatched);
        Assert.Equal(10, fits.MaxBatch);
        var tight = MemoryEstimate.Plan(10, null, 4, 512, 512, 8, ScalarType.Float16, 4_000_000_000, "cuda");
        Assert.True(tight.MicroBatched);
        Assert.Equal(4, tight.MaxBatch);   // 3 · 4 · 4096 · 40000 · 2 = 3.9 GB
        Assert.Equal(2, tight.MaxDecodeBatch);
        Assert.Contains("micro-batching", tight.Explanation);
        var e = Assert.Throws<InvalidOperationException>(() =>
            MemoryEstimate.Plan(10, null, null, 4096, 4096, 8, ScalarType.Float32, 20_000_000_000, "the CPU (available RAM)"));
        Assert.Contains("not enough memory", e.Message);
        Assert.Contains("20.0 GB free on the CPU", e.Message);
        Assert.Equal(10, MemoryEstimate.Plan(10, null, null, 512, 512, 8, ScalarType.Float32, null, "cpu").MaxBatch);
        Assert.True(MemoryProbe.AvailableBytes(CPU) > 0);
    }

    // ---- defect 5: non-finite numbers ----

    [Fact]
    public void NonFiniteOrHugeGuidanceIsRefused()
    {
        foreach (var (option, value) in new[] { ("--image-cfg-scale", "Infinity"), ("--text-cfg-scale", "1e30"), ("--text-cfg-scale", "NaN"), ("--image-cfg-scale", "-Infinity") })
        {
            var (code, _, err) = Cli("run-single", "--input", "x.png", "--instruction", "x", option, value, "--output-dir", Out);
            Assert.True(code == 1, $"{option} {value}: exit {code}: {err}");
            Assert.Contains($"{option} must be a finite number between 0 and 1000", err);
            Assert.DoesNotContain("(Parameter", err);
        }
    }

    [Fact]
    public void LibraryErrorsNameItsParametersAndTheCliMapsThemToFlags()
    {
        TorchRuntime.Initialize();
        var stop = Assert.Throws<ArgumentOutOfRangeException>(() => new SelectionOptions { StoppingStep = 11 }.Validate(10));
        Assert.StartsWith("SelectionOptions.StoppingStep must be between 1 and EditOptions.InferenceSteps (10), got 11", stop.Message);
        Assert.Equal("StoppingStep", stop.ParamName);
        var tok = Assert.Throws<ArgumentException>(() => Elect.Editor.Load(Path.Combine(_tmp, "nowhere"), "instructpix2pix", CPU, ScalarType.Float32, null, "tok"));
        Assert.Equal("tokenizerPath", tok.ParamName);
        Assert.DoesNotContain("--", tok.Message);

        var image = Path.Combine(_tmp, "square.png");
        new RgbImage(64, 64).SavePng(image);
        string[] Args(params string[] extra) =>
            ["run-single", "--input", image, "--instruction", "x", "--model-path", Path.Combine(_tmp, "nowhere"), "--device", "cpu", "--output-dir", Out, "--resolution", "64", .. extra];
        var (c1, _, e1) = Cli(Args("--tokenizer-path", "tok"));
        Assert.Equal(1, c1);
        Assert.Contains("elect: error: --tokenizer-path is only for --model instructdiffusion; instructpix2pix checkpoints carry their own tokenizer", e1);
        var (c2, _, e2) = Cli(Args("--select-one-seed", "--inference-steps", "10", "--stopping-step", "10", "--first-step-for-mask-extraction", "12"));
        Assert.Equal(1, c2);
        Assert.Contains("--first-step-for-mask-extraction (12) must be below --stopping-step (10)", e2);
        var (c3, _, e3) = Cli(Args());
        Assert.Equal(1, c3);
        Assert.Contains("pass its path as --model-path", e3);
        foreach (var e in new[] { e1, e2, e3 })
        {
            Assert.Single(e.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.DoesNotContain("Options.", e);
        }
    }

    /// <summary>Delegates to a real model; one chosen model call returns NaN in its first candidate's text branch.</summary>
    private sealed class PoisonedModel(EditingModel inner, int poisonCall, bool poisonDecode = false, ScalarType? declaredDType = null)
        : DelegatingModel(inner, declaredDType)
    {
        private int _calls;
        public int Decodes { get; private set; }
        public int Float32Decodes { get; private set; }
        public override Tensor Forward(EditCondition condition, Tensor modelInput, Tensor timestep)
        {
            var y = Inner.Forward(condition, modelInput.to(Inner.DType), timestep);
            if (++_calls == poisonCall) y[0].fill_(float.NaN);
            return y;
        }
        public override Tensor DecodeLatents(Tensor latents)
        {
            Decodes++;
            var y = Inner.DecodeLatents(latents);
            if (poisonDecode) y[0, 0, 0, 0].fill_(float.PositiveInfinity);
            return y;
        }
        public override Tensor DecodeLatentsInFloat32(Tensor latents) { Float32Decodes++; return Inner.DecodeLatents(latents); }
    }

    [SkippableFact]
    public void NaNInAModelOutputIsDetectedAtTheStoppingStep()
    {
        using var editor = Editor.Load(Fixtures.Ip2pTiny, "instructpix2pix", CPU, ScalarType.Float32);
        var input = ImageOps.ImageResize(RgbImage.Load(Path.Combine(Fixtures.Require(), "models", "ip2p-input.png")), 64);
        using var condition = editor.Model.Prepare(input, "make it blue");
        var options = new EditOptions { InferenceSteps = 4 };
        var selection = new SelectionOptions { StoppingStep = 3, LastMaskStep = 1 };
        using (var warm = new ElectEngine(editor.Model).Run(condition, [1, 2], options, selection, null, default, TimeSpan.Zero)) { }   // caches the n = 2 and n = 1 conditioning
        long live = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        // poisoned at step 2 (after the mask steps): only seed 1's estimate is NaN
        var e = Assert.Throws<NonFiniteException>(() => new ElectEngine(new PoisonedModel(editor.Model, 2)).Run(condition, [1, 2], options, selection, null, default, TimeSpan.Zero));
        Assert.Contains("stopping step 3", e.Message);
        Assert.Contains("seed(s) 1 ", e.Message);
        Assert.Contains("Tweedie", e.Message);
        Assert.Equal(live, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
        // poisoned after selection: the final image is checked
        var plain = Assert.Throws<NonFiniteException>(() => new ElectEngine(new PoisonedModel(editor.Model, 4)).Run(condition, [1], options, null, null, default, TimeSpan.Zero));
        Assert.Contains("final latents of seed(s) 1", plain.Message);
        // a float32 model whose decode overflows: reported as such
        var decode = Assert.Throws<NonFiniteException>(() => new ElectEngine(new PoisonedModel(editor.Model, -1, poisonDecode: true)).Run(condition, [1, 2], options, selection, null, default, TimeSpan.Zero));
        Assert.Contains("decode", decode.Message);
        Assert.Equal(live, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
        // a "half-precision" model whose decode overflows: the step's decode is retried in float32, which cures it
        var half = new PoisonedModel(editor.Model, -1, poisonDecode: true, declaredDType: ScalarType.Float16);
        using (var retried = new ElectEngine(half).Run(condition, [1, 2], options, selection, null, default, TimeSpan.Zero))
        {
            Assert.All(retried.Bis!, b => Assert.True(double.IsFinite(b)));
            Assert.Equal(2, half.Float32Decodes);   // the Tweedie estimates at the stopping step, then the final image
        }
        // and a clean run is unaffected
        using var ok = new ElectEngine(new PoisonedModel(editor.Model, -1)).Run(condition, [1, 2], options, selection, null, default, TimeSpan.Zero);
        Assert.All(ok.Bis!, b => Assert.True(double.IsFinite(b)));
    }

    // ---- defect 8: small items ----

    [SkippableFact]
    public void SmallItems()
    {
        var input = Path.Combine(Fixtures.Require(), "models", "ip2p-input.png");
        // one-candidate ELECT: no best-seed file (only with --visualize-all-seeds)
        var (code, stdout, err) = Cli(["run-single", "--input", input, "--instruction", "make it blue", .. Common("--resolution", "64", "--inference-steps", "2",
            "--select-one-seed", "--candidate-seeds", "5", "--stopping-step", "1", "--last-step-for-mask-extraction", "1", "--log-level", "warning")]);
        Assert.True(code == 0, err);
        Assert.Empty(Directory.GetFiles(Out, "*best_seed*"));
        Assert.Contains("ip2p-input_output_5.png", stdout);
        // --limit -1 is refused
        var ds = Dataset(1);
        var (c2, _, e2) = Cli([.. DatasetArgs(ds, 2), "--limit", "-1"]);
        Assert.Equal(1, c2);
        Assert.Contains("--limit must be >= 0, got -1", e2);
        // validation errors carry no "(Parameter 'X')"
        var (c3, _, e3) = Cli(["run-single", "--input", input, "--instruction", "x", .. Common("--inference-steps", "0")]);
        Assert.Equal(1, c3);
        Assert.EndsWith("got 0", e3.Trim());
        // a truncated PNG names a reason
        var png = new RgbImage(64, 64).EncodePng();
        var e4 = Assert.Throws<InvalidDataException>(() => RgbImage.Decode(png[..(png.Length / 2)], "t.png"));
        Assert.Matches(@"^cannot decode image 't\.png': [ -~]*[a-z]{4}[ -~]*$", e4.Message);
        // JSON keeps quotes readable
        var json = Path.Combine(_tmp, "q.json");
        JsonFiles.Write(json, new ItemFailure { Key = "k", Error = "can't read 'x' <y> & z" });
        Assert.Contains("can't read 'x' <y> & z", File.ReadAllText(json));
    }

    [Fact]
    public void PieBenchMaskAndNonStringFieldsAreChecked()
    {
        var ds = Directory.CreateDirectory(Path.Combine(_tmp, "pie")).FullName;
        File.WriteAllText(Path.Combine(ds, EditDataset.PieBenchFile), """
        {
          "ok": {"image_path": "a.jpg", "editing_instruction": "x", "mask": [1, 2, 10, 3]},
          "nomask": {"image_path": "a.jpg", "editing_instruction": "x"},
          "text-mask": {"image_path": "a.jpg", "editing_instruction": "x", "mask": "1 2"},
          "odd-mask": {"image_path": "a.jpg", "editing_instruction": "x", "mask": [1, 2, 3]},
          "negative-mask": {"image_path": "a.jpg", "editing_instruction": "x", "mask": [1, -2]},
          "float-mask": {"image_path": "a.jpg", "editing_instruction": "x", "mask": [1.5, 2]},
          "numeric-path": {"image_path": 5, "editing_instruction": "x"},
          "missing-path": {"editing_instruction": "x"}
        }
        """);
        var (items, bad, _) = EditDataset.Load(ds);
        Assert.Equal(["ok", "nomask"], items.Select(i => i.Key));
        var errors = bad.ToDictionary(b => b.Key, b => b.Error);
        Assert.Contains("mask must be an array of (start, length) integer pairs, got a string", errors["text-mask"]);
        Assert.Contains("odd number of values (3)", errors["odd-mask"]);
        Assert.Contains("mask value 1 must be a non-negative integer, got -2", errors["negative-mask"]);
        Assert.Contains("mask value 0 must be a non-negative integer, got 1.5", errors["float-mask"]);
        Assert.Equal("image_path must be a string, got a number 5", errors["numeric-path"]);
        Assert.Equal("missing image_path", errors["missing-path"]);
    }

    // ---- bench and the native self-check ----

    [Fact]
    public void BenchWritesEachModeAsItCompletesAndAcceptsTheHelpSyntax()
    {
        var output = Path.Combine(_tmp, "bench.json");
        var (code, _, err) = Cli("bench", "--size", "tiny", "--device", "cpu", "--resolution", "64", "--inference-steps", "2", "--candidates", "2",
            "--stopping-step", "1", "--last-step-for-mask-extraction", "1", "--runs", "1", "--warmup", "0", "--output", output, "--log-level", "warning",
            "--modes", "plain|elect,best-of-n");
        Assert.True(code == 0, err);
        var json = JsonNode.Parse(File.ReadAllText(output))!;
        Assert.Equal(["plain", "elect", "best-of-n"], json["modes"]!.AsObject().Select(kv => kv.Key));
        Assert.True(json["complete"]!.GetValue<bool>());

        TorchRuntime.Initialize();
        var snapshots = new List<string>();
        Elect.Runner.Bench.Run(new Elect.Runner.BenchOptions { Size = "tiny", Resolution = 64, Steps = 2, Candidates = 2, StoppingStep = 1, LastMaskStep = 1,
            Runs = 1, Warmup = 0, Modes = ["plain", "elect"] }, null, d => snapshots.Add(JsonFiles.ToJson(d)));
        Assert.Equal(2, snapshots.Count);
        var first = JsonNode.Parse(snapshots[0])!;
        Assert.False(first["complete"]!.GetValue<bool>());
        Assert.Equal(["plain"], first["modes"]!.AsObject().Select(kv => kv.Key));
        var (c2, _, e2) = Cli("bench", "--modes", "plain|fast", "--size", "tiny", "--device", "cpu", "--log-level", "warning");
        Assert.Equal(1, c2);
        Assert.Contains("unknown bench mode 'fast'", e2);
    }

    [SkippableFact]
    public void NativeSelfCheckResolvesTheBindingAndNamesAMissingSymbol()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "dlopen check is Linux-only");
        Assert.NotNull(NativeCheck.FindBinding());
        Assert.Null(NativeCheck.Check());   // the build's copy (GLIBCXX_3.4.32 marked weak) resolves completely
        var gcc = new[] { "/usr/bin/gcc", "/usr/bin/cc" }.FirstOrDefault(File.Exists);
        Skip.If(gcc is null, "no C compiler to build a library with a missing symbol");
        var c = Path.Combine(_tmp, "m.c");
        File.WriteAllText(c, "void elect_missing_function_for_test(void);\nvoid elect_caller(void) { elect_missing_function_for_test(); }\n");
        var so = Path.Combine(_tmp, "libm_test.so");
        using (var p = Process.Start(gcc, ["-shared", "-fPIC", "-o", so, c])) { p.WaitForExit(); Skip.If(p.ExitCode != 0, "gcc failed"); }
        var e = Assert.Throws<InvalidOperationException>(() => NativeCheck.Check(so));
        Assert.Contains("undefined symbol: elect_missing_function_for_test", e.Message);
        Assert.Contains("does not match", e.Message);
    }

    // ---- defect 6: progress off a terminal ----

    [SkippableFact]
    public void NonTerminalRunPrintsProgressLines()
    {
        var input = Path.Combine(Fixtures.Require(), "models", "ip2p-input.png");
        using var child = new Child(["run-single", "--input", input, "--instruction", "make it blue", .. Common("--resolution", "64", "--inference-steps", "20",
            "--select-one-seed", "--candidate-seeds", "1", "2", "--stopping-step", "5", "--last-step-for-mask-extraction", "2")]);
        int code = child.Wait();
        var err = child.Err;
        Assert.True(code == 0, err);
        var lines = err.Split('\n').Where(l => l.Contains("steps/s")).ToArray();
        Assert.True(lines.Length >= 10, $"expected a progress line every ~10% of the steps, got:\n{err}");
        Assert.Contains(lines, l => l.Contains("step 20/20") && l.Contains("ETA"));
        Assert.Contains("candidates phase", err);
        Assert.Contains("finish phase", err);
    }

    // ---- defect 7: exit codes ----

    [SkippableFact]
    public void DatasetWithABadItemExits3()
    {
        var ds = Dataset(1, ",\n\"broken\": {\"image_path\": \"missing.png\", \"editing_instruction\": \"x\"}");
        var (code, _, err) = Cli([.. DatasetArgs(ds, 2), "--log-level", "warning"]);
        Assert.True(code == ElectCli.FailedItemsExitCode, $"exit {code}: {err}");
        Assert.Contains("1 item(s) failed", err);
        var summary = Summary();
        Assert.Equal(1, summary["completed"]!.GetValue<int>());
        Assert.Equal("broken", summary["failures"]![0]!["key"]!.GetValue<string>());
    }
}
