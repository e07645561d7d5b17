using System.CommandLine;
using Elect.Pipelines;
using Elect.Runner.Hub;
using Microsoft.Extensions.Logging;

namespace Elect.Cli;

/// <summary>
/// <c>elect download MODEL|REPO_ID</c>: fetches a family's published checkpoint (into its default
/// <c>--model-path</c>) or any Hub repository (into <c>--local-dir</c>), from <c>HF_ENDPOINT</c> with <c>HF_TOKEN</c>.
/// </summary>
internal static class DownloadCommand
{
    public static Command Build(TextWriter stdout, TextWriter stderr)
    {
        var c = new Command("download", "Download a family's published checkpoint (" + ModelFamilies.NamesInProse() + ") or a Hugging Face Hub repository (owner/name)");
        var what = new Argument<string>("MODEL|REPO_ID") { Description = "A --model name or a Hub repository id" };
        var localDir = new Option<string?>("--local-dir") { Description = "Where the files go (default for a family: its default --model-path; for a repository: checkpoints/<name>)" };
        var revision = new Option<string>("--revision") { Description = "Branch, tag or commit", DefaultValueFactory = _ => "main" };
        var include = new Option<string[]>("--include") { Description = "Only files matching these globs (* within a folder, ** across folders); default: what the family loads", AllowMultipleArgumentsPerToken = true };
        var precision = new Option<string>("--precision") { Description = "fp16: the fp16 weight variants where a folder has them (half the download; what CUDA runs by default); fp32: full precision", DefaultValueFactory = _ => "fp16" };
        precision.AcceptOnlyFromAmong("fp16", "fp32");
        var logLevel = new Option<string>("--log-level") { DefaultValueFactory = _ => "information", Description = "Logging threshold" };
        c.Add(what);
        foreach (var o in new Option[] { localDir, revision, include, precision, logLevel }) c.Add(o);
        c.SetAction((p, cancel) => Task.FromResult(ElectCli.Guard(stderr, p.GetValue(logLevel)!, log =>
        {
            var name = p.GetValue(what)!.Trim();
            string repoId;
            string dir;
            IReadOnlyList<string>? globs = p.GetValue(include) is { Length: > 0 } g ? g : null;
            var family = FamilyDownloads.Find(name);
            if (family is not null)
            {
                if (family.RepoId is null)
                {
                    // nothing to fetch (demo), or nothing elect can fetch (mgie): the note says what to do, on stdout
                    stdout.WriteLine($"{name}: {family.Note}");
                    return 0;
                }
                repoId = family.RepoId;
                dir = p.GetValue(localDir) ?? family.LocalDir;
                globs ??= family.Include;
                log.LogInformation("{Name}: {Repo} ({Size}) into {Dir}", name, repoId, family.Size, dir);
            }
            else
            {
                if (!name.Contains('/'))
                    throw new ArgumentException($"'{name}' is neither a model ({ModelFamilies.NamesInProse()}) nor a Hub repository id (owner/name)");
                repoId = HubClient.CheckRepoId(name);
                dir = p.GetValue(localDir) ?? Path.Combine("checkpoints", repoId.Split('/')[1]);
            }
            using var client = new HubClient();
            var lastPercent = new Dictionary<string, int>();
            var progress = new SyncProgress<HubProgress>(pr =>
            {
                if (pr.Total is not { } total || total < 50_000_000) return;   // large files only: a line every 10 %
                int percent = (int)(100 * pr.Bytes / Math.Max(1, total));
                if (lastPercent.TryGetValue(pr.Path, out var last) && percent < last + 10) return;
                lastPercent[pr.Path] = percent;
                log.LogInformation("{Path}: {Percent}% of {Total}", pr.Path, percent, HubClient.FormatBytes(total));
            });
            var files = client.DownloadRepoAsync(repoId, dir, p.GetValue(revision)!, p.GetValue(precision)!, globs,
                m => log.LogInformation("{Message}", m), progress, cancel).GetAwaiter().GetResult();
            if (family?.Note is { } note) log.LogWarning("{Name}: {Note}", name, note);
            stdout.WriteLine(dir);
            return 0;
        })));
        return c;
    }

    /// <summary>An <see cref="IProgress{T}"/> that reports on the caller's thread (Progress&lt;T&gt; posts to the thread pool).</summary>
    private sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
