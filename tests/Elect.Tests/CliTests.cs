using System.Text.Json.Nodes;
using Elect.Cli;
using Elect.Imaging;
using Xunit;

namespace Elect.Tests;

/// <summary>The elect command line, in process, on the fixture model.</summary>
public sealed class CliTests : IDisposable
{
    private readonly string _tmp = Directory.CreateTempSubdirectory("elect-cli-").FullName;

    public void Dispose() => Directory.Delete(_tmp, recursive: true);

    private static (int Code, string Out, string Err) Cli(params string[] args) => CliHarness.Run(args);

    private string[] Common(params string[] extra) => CommonWith(Fixtures.Ip2pTiny, extra);

    private string[] CommonWith(string modelPath, params string[] extra) =>
        ["--model-path", modelPath, "--device", "cpu", "--output-dir", Path.Combine(_tmp, "out"), "--log-level", "warning", .. extra];

    [SkippableFact]
    public void RunSingleElectWritesReferenceNamesAndReport()
    {
        var input = Path.Combine(Fixtures.Require(), "models", "ip2p-input.png");
        var report = Path.Combine(_tmp, "report.json");
        var (code, stdout, stderr) = Cli(["run-single", "--input", input, "--instruction", "Replace the cat with a bear",
            .. Common("--resolution", "128", "--inference-steps", "20", "--select-one-seed", "--candidate-seeds", "11", "22", "33", "44", "55",
                      "--stopping-step", "8", "--last-step-for-mask-extraction", "4", "--visualize-all-seeds", "--report", report)]);
        Assert.True(code == 0, stderr);
        var dir = Path.Combine(_tmp, "out");
        foreach (var s in new[] { 11, 22, 33, 44, 55 })
        {
            var file = Path.Combine(dir, $"ip2p-input_output_{s}.png");
            Assert.True(File.Exists(file), file);
            Assert.Contains(file, stdout);
            using var png = RgbImage.Load(file).ToByteTensor();
            Ip2pPipelineTests.AssertImageClose(Fixtures.Golden($"ip2p.elect.output-{s}"), png, $"cli output-{s}");
        }
        using (var best = RgbImage.Load(Path.Combine(dir, "ip2p-input_output-best_seed-33.png")).ToByteTensor())
            Ip2pPipelineTests.AssertImageClose(Fixtures.Golden("ip2p.elect.output-best_seed-33"), best, "cli best");
        using (var mask = GrayImage.Load(Path.Combine(dir, "ip2p-input_output-mask.png")).ToByteTensor())
            Ip2pPipelineTests.AssertImageClose(Fixtures.Golden("ip2p.elect.output-mask"), mask, "cli mask");
        var json = JsonNode.Parse(File.ReadAllText(report))!;
        Assert.Equal(33, json["best_seed"]!.GetValue<long>());
        Assert.Equal(100, json["nfe"]!.GetValue<long>());
        Assert.Equal(100, json["nfe_best_of_n"]!.GetValue<long>());
        var bis = Fixtures.Golden("ip2p.elect.bis").data<double>().ToArray();
        var cands = json["candidates"]!.AsArray();
        for (int k = 0; k < 5; k++) Assert.True(Math.Abs(bis[k] - cands[k]!["bis"]!.GetValue<double>()) <= 1e-4);
        Assert.True(json["seconds"]!["total"]!.GetValue<double>() > 0);
    }

    [SkippableFact]
    public void RunSingleElectKeepingOnlyTheWinner()
    {
        var input = Path.Combine(Fixtures.Require(), "models", "ip2p-input2.png");
        var (code, _, stderr) = Cli(["run-single", "--input", input, "--instruction", "change the red mushroom into a blue one",
            .. Common("--resolution", "192", "--inference-steps", "10", "--select-one-seed", "--candidate-seeds", "101", "202", "303",
                      "--stopping-step", "4", "--last-step-for-mask-extraction", "3")]);
        Assert.True(code == 0, stderr);
        var dir = Path.Combine(_tmp, "out");
        Assert.Equal(["ip2p-input2_input.png", "ip2p-input2_output-mask.png", "ip2p-input2_output_202.png"],
            Directory.GetFiles(dir).Select(f => Path.GetFileName(f)!).Order(StringComparer.Ordinal).ToArray());
        using var png = RgbImage.Load(Path.Combine(dir, "ip2p-input2_output_202.png")).ToByteTensor();
        Ip2pPipelineTests.AssertImageClose(Fixtures.Golden("ip2p.elect2.output-202"), png, "cli output-202");
        using var mask = GrayImage.Load(Path.Combine(dir, "ip2p-input2_output-mask.png")).ToByteTensor();
        Ip2pPipelineTests.AssertImageClose(Fixtures.Golden("ip2p.elect2.output-mask"), mask, "cli mask 2");
    }

    [SkippableFact]
    public void RunSingleUltraEditElect()
    {
        var input = Path.Combine(Fixtures.Require(), "models", "ultraedit-input.png");
        var (code, _, stderr) = Cli(["run-single", "--input", input, "--instruction", "Replace the cat with a bear", "--model", "ultraedit",
            .. CommonWith(Fixtures.UltraEditTiny, "--resolution", "128", "--inference-steps", "20", "--select-one-seed", "--candidate-seeds", "11", "22", "33", "44",
                          "--stopping-step", "8", "--last-step-for-mask-extraction", "4", "--visualize-all-seeds")]);
        Assert.True(code == 0, stderr);
        var dir = Path.Combine(_tmp, "out");
        using var best = RgbImage.Load(Path.Combine(dir, "ultraedit-input_output-best_seed-44.png")).ToByteTensor();
        Ip2pPipelineTests.AssertImageClose(Fixtures.Golden("ultraedit.elect.output-best_seed-44"), best, "cli ultraedit best");
        using var mask = GrayImage.Load(Path.Combine(dir, "ultraedit-input_output-mask.png")).ToByteTensor();
        Ip2pPipelineTests.AssertImageClose(Fixtures.Golden("ultraedit.elect.output-mask"), mask, "cli ultraedit mask");
    }

    [Fact]
    public void MaskImageForAFamilyWithoutMasksIsRefusedBeforeLoading()
    {
        var img = Path.Combine(_tmp, "in.png");
        new RgbImage(64, 64).SavePng(img);
        // the checkpoint path does not exist: only a check made before any model work can give this error
        var (code, _, err) = Cli(["run-single", "--input", img, "--instruction", "x", "--model", "instructdiffusion",
            "--model-path", Path.Combine(_tmp, "none.ckpt"), "--mask-image", img, "--device", "cpu", "--output-dir", Path.Combine(_tmp, "o")]);
        Assert.Equal(1, code);
        Assert.Equal("elect: error: --model instructdiffusion takes no mask image; drop --mask-image", err.Trim());
        Assert.False(File.Exists(Path.Combine(_tmp, "o", "in_output_1.png")));
    }

    [Fact]
    public void BenchBuildsEveryRegisteredFamilyWithRandomWeights() =>
        Assert.Equal(Elect.Pipelines.ModelFamilies.Names.Order(), Elect.Runner.Bench.RandomFamilyNames.Order());

    [Theory]
    [InlineData("instructpix2pix")]
    [InlineData("ultraedit")]
    [InlineData("mgie")]
    public void BenchRunsEveryModeOnTinyRandomModels(string model)
    {
        var output = Path.Combine(_tmp, $"bench-{model}.json");
        var (code, stdout, stderr) = Cli("bench", "--model", model, "--size", "tiny", "--device", "cpu", "--resolution", "64",
            "--inference-steps", "4", "--candidates", "3", "--stopping-step", "2", "--last-step-for-mask-extraction", "1",
            "--runs", "2", "--warmup", "1", "--output", output, "--log-level", "warning",
            "--modes", "plain", "elect", "best-of-n", "elect-sequential");
        Assert.True(code == 0, stderr);
        var json = JsonNode.Parse(File.ReadAllText(output))!;
        Assert.Equal(JsonNode.Parse(stdout)!.ToJsonString(), json.ToJsonString());
        var modes = json["modes"]!;
        Assert.Equal(4, modes["plain"]!["nfe"]!.GetValue<long>());
        Assert.Equal(3 * 2 + (4 - 2), modes["elect"]!["nfe"]!.GetValue<long>());
        Assert.Equal(3 * 4, modes["best-of-n"]!["nfe"]!.GetValue<long>());
        Assert.Equal(3 * 2 + (4 - 2), modes["elect-sequential"]!["nfe"]!.GetValue<long>());
        Assert.True(modes["elect"]!["median_s"]!.GetValue<double>() > 0);
        Assert.True(json["denoiser_parameters"]!.GetValue<long>() > 0);
        Assert.Equal(2, modes["elect"]!["runs_s"]!.AsArray().Count);
        var memory = modes["elect"]!["memory"]!;   // a reading after every run, the warm-up included
        Assert.Equal(3, memory["items"]!.GetValue<int>());
        Assert.Equal(0, memory["live_tensors"]!["growth"]!.GetValue<double>());
        Assert.StartsWith("cpu", json["device"]!.GetValue<string>());
    }

    [SkippableFact]
    public void RunSinglePlainWritesTheSeedOutput()
    {
        var input = Path.Combine(Fixtures.Require(), "models", "ip2p-input.png");
        var (code, _, stderr) = Cli(["run-single", "--input", input, "--instruction", "Replace the cat with a bear",
            .. Common("--resolution", "128", "--inference-steps", "20", "--seed", "11")]);
        Assert.True(code == 0, stderr);
        var file = Path.Combine(_tmp, "out", "ip2p-input_output_11.png");
        using var png = RgbImage.Load(file).ToByteTensor();
        using var golden = RgbImage.FromTensor(Fixtures.Golden("ip2p.vanilla.seed11")).ToByteTensor();
        Ip2pPipelineTests.AssertImageClose(golden, png, "cli plain seed 11");
    }

    [SkippableFact]
    public void BadInputGivesOneLineErrorsAndNonZeroExit()
    {
        var good = Path.Combine(Fixtures.Require(), "models", "ip2p-input.png");
        var corrupt = Path.Combine(_tmp, "corrupt.png");
        File.WriteAllBytes(corrupt, [0x89, 0x50, 0x4e, 0x47, 1, 2, 3, 4, 5]);
        var emptyCheckpoint = Directory.CreateDirectory(Path.Combine(_tmp, "empty-ckpt")).FullName;
        (string[] Args, int Code, string Message)[] cases =
        [
            (["run-single", "--input", Path.Combine(_tmp, "missing.png"), "--instruction", "x", .. Common()], 1, "missing.png"),
            (["run-single", "--input", corrupt, "--instruction", "x", .. Common()], 1, "corrupt.png"),
            (["run-single", "--input", good, "--instruction", "   ", .. Common()], 1, "--instruction is empty"),
            (["run-single", "--input", good, "--instruction", "x", .. Common("--select-one-seed", "--inference-steps", "10", "--stopping-step", "11")], 1, "--stopping-step must be between 1 and --inference-steps (10)"),
            (["run-single", "--input", good, "--instruction", "x", .. Common("--inference-steps", "0")], 1, "--inference-steps must be between 1 and 1000"),
            (["run-single", "--input", good, "--instruction", "x", .. Common("--select-one-seed", "--candidate-seeds")], 2, "--candidate-seeds"),
            (["run-single", "--input", good, "--instruction", "x", "--model", "dalle", .. Common()], 2, "dalle"),
            (["run-single", "--input", good, "--instruction", "x", "--frobnicate", .. Common()], 2, "--frobnicate"),
            (["run-single", "--input", good, "--instruction", "x", .. CommonWith(emptyCheckpoint)], 1, "missing model_index.json"),
            (["run-single", "--input", good, "--instruction", "x", .. Common(), "--model", "ultraedit"], 1, "no transformer component"),
        ];
        foreach (var (args, expectedCode, message) in cases)
        {
            var (code, _, err) = Cli(args);
            Assert.True(code == expectedCode, $"{string.Join(' ', args.Take(6))}: exit {code}, stderr: {err}");
            var lines = err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.True(lines.Length == 1, $"expected one line, got: {err}");
            Assert.StartsWith("elect: error: ", lines[0]);
            Assert.Contains(message, lines[0]);
        }
    }

    [SkippableFact]
    public void CudaWithoutACudaLibtorchIsAOneLineError()
    {
        var good = Path.Combine(Fixtures.Require(), "models", "ip2p-input.png");
        Skip.If(TorchSharp.torch.cuda.is_available(), "this libtorch has CUDA");
        var (code, _, err) = Cli(["run-single", "--input", good, "--instruction", "x", "--model-path", Fixtures.Ip2pTiny, "--device", "cuda", "--output-dir", _tmp]);
        Assert.Equal(1, code);
        Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("elect: error: CUDA was requested but libtorch could not initialise it", err);
    }

    [SkippableFact]
    public void RunDatasetSkipsBadItemsAndResumes()
    {
        var root = Fixtures.Require();
        var ds = Directory.CreateDirectory(Path.Combine(_tmp, "ds")).FullName;
        File.Copy(Path.Combine(root, "models", "ip2p-input.png"), Path.Combine(ds, "a.png"));
        File.WriteAllText(Path.Combine(ds, "broken.png"), "not an image");
        File.WriteAllText(Path.Combine(ds, "dataset.json"), """
        {
          "cat": {"image_path": "a.png", "editing_instruction": "Replace the cat with a bear"},
          "bad-image": {"image_path": "broken.png", "editing_instruction": "x"},
          "no-instruction": {"image_path": "a.png", "editing_instruction": ""},
          "malformed": {"image_path": "a.png"},
          "mushroom": {"image_path": "PLACEHOLDER", "editing_instruction": "change the red mushroom into a blue one"}
        }
        """.Replace("PLACEHOLDER", Path.Combine(root, "models", "ip2p-input2.png")));
        string[] args = ["run-dataset", "--dataset-dir", ds, .. Common("--resolution", "128", "--inference-steps", "3", "--select-one-seed",
                         "--candidate-seeds", "1", "2", "--stopping-step", "2", "--last-step-for-mask-extraction", "1")];
        var (code, _, err) = Cli(args);
        Assert.True(code == ElectCli.FailedItemsExitCode, err);   // finished, with failed items
        var outDir = Path.Combine(_tmp, "out");
        var summary = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "summary.json")))!;
        Assert.Equal(2, summary["done"]!.GetValue<int>());
        Assert.Equal(3, summary["failed"]!.GetValue<int>());
        var failed = summary["failures"]!.AsArray().Select(f => f!["key"]!.GetValue<string>()).Order().ToArray();
        Assert.Equal(["bad-image", "malformed", "no-instruction"], failed);
        Assert.True(File.Exists(Path.Combine(outDir, "cat_output-mask.png")));
        Assert.True(File.Exists(Path.Combine(outDir, "mushroom_report.json")));
        Assert.Single(Directory.GetFiles(outDir, "mushroom_output_*.png"));

        var (code2, _, err2) = Cli(args);
        Assert.True(code2 == ElectCli.FailedItemsExitCode, err2);
        var again = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "summary.json")))!;
        Assert.Equal(0, again["done"]!.GetValue<int>());
        Assert.Equal(2, again["skipped_resume"]!.GetValue<int>());
        Assert.Equal(2, again["completed"]!.GetValue<int>());
        Assert.Equal(2, again["results"]!.AsArray().Count);
    }
}
